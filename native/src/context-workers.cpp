// The work a Context does off the JS thread (see context-workers.h).
#include "context-workers.h"

#include <algorithm>
#include <chrono>

#include "decode.h"

namespace kvzap {

static double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

EvaluateWorker::EvaluateWorker(Napi::Env env, Context * c, std::vector<llama_token> toks, Napi::Function progress,
                               bool all_logits) :
    ContextWorker(env, c), toks(std::move(toks)), all_logits(all_logits) {
    if (!progress.IsEmpty()) on_progress = Napi::Persistent(progress);
}

void EvaluateWorker::Execute(const ExecutionProgress & p) {
    double t0         = now_ms();
    int32_t last_sent = 0;
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(c->model->model));
    int32_t collected = 0;
    status            = decode_tokens(
                   c->ctx, c->n_past, c->abort_flag, toks.data(), (int32_t)toks.size(), done,
                   [&](int32_t d) {
            if (all_logits) {
                for (int32_t i = collected; i < d; i++) {
                    const float * lg = llama_get_logits_ith(c->ctx, i - collected);
                    logits.insert(logits.end(), lg, lg + n_vocab);
                }
                collected = d;
            }
            if (d - last_sent >= 256 || d == (int32_t)toks.size()) {
                last_sent = d;
                p.Send(&d, 1);
            }
        },
                   all_logits);
    ms = now_ms() - t0;
    kvzap_settle(llama_get_memory(c->ctx));
    if (status < 0) fail_decode(status);
}

void EvaluateWorker::OnProgress(const int32_t * d, size_t n) {
    if (!on_progress.IsEmpty() && n > 0) on_progress.Call({ Napi::Number::New(Env(), d[n - 1]) });
}

Napi::Value EvaluateWorker::result() {
    Napi::Object o = Napi::Object::New(Env());
    o.Set("tokens", done);
    o.Set("ms", ms);
    o.Set("aborted", status == 1);
    if (all_logits) o.Set("logits", to_f32_array(Env(), logits));
    return o;
}

GenerateWorker::GenerateWorker(Napi::Env env, Context * c, SamplerParams sp, int32_t max_tokens,
                               Napi::Function on_token) :
    ContextWorker(env, c), sp(sp), max_tokens(max_tokens) {
    if (!on_token.IsEmpty()) on_token_ref = Napi::Persistent(on_token);
}

void GenerateWorker::Execute(const ExecutionProgress & p) {
    const llama_vocab * vocab = llama_model_get_vocab(c->model->model);
    llama_sampler_ptr smpl    = make_sampler(sp, vocab);
    double t0                 = now_ms();
    reason                    = "maxTokens";
    for (int32_t i = 0; i < max_tokens; i++) {
        if (c->abort_flag.load()) {
            reason = "abort";
            break;
        }
        llama_token t = llama_sampler_sample(smpl.get(), c->ctx, -1);
        generated.push_back(t);
        p.Send(&t, 1);
        if (llama_vocab_is_eog(vocab, t)) {
            reason = "eog";
            break;
        }
        if (i + 1 == max_tokens) break;
        if (c->n_past >= (int32_t)llama_n_ctx(c->ctx)) {
            reason = "contextFull";
            break;
        }
        int32_t done = 0;
        int status   = decode_tokens(c->ctx, c->n_past, c->abort_flag, &t, 1, done, nullptr);
        if (status == 1) {
            reason = "abort";
            break;
        }
        if (status < 0) {
            fail_decode(status);
            break;
        }
        decoded++;
    }
    ms = now_ms() - t0;
    kvzap_settle(llama_get_memory(c->ctx));
}

void GenerateWorker::OnProgress(const llama_token * toks, size_t n) {
    if (on_token_ref.IsEmpty()) return;
    for (size_t i = 0; i < n; i++) on_token_ref.Call({ Napi::Number::New(Env(), toks[i]) });
}

Napi::Value GenerateWorker::result() {
    Napi::Object o        = Napi::Object::New(Env());
    Napi::Int32Array toks = Napi::Int32Array::New(Env(), generated.size());
    std::copy(generated.begin(), generated.end(), toks.Data());
    o.Set("tokens", toks);
    o.Set("decoded", decoded);
    o.Set("reason", reason);
    o.Set("ms", ms);
    return o;
}

void OracleWorker::Execute() {
    const llama_model * m = c->model->model;
    out.resize((size_t)llama_model_n_layer(m) * (c1 - c0) * llama_model_n_head_kv(m));
    std::string err;
    if (!kvzap_oracle_scores(llama_get_memory(c->ctx), c0, c1, q0, q1, out.data(), llama_n_threads(c->ctx), device,
                             &used, &err)) {
        SetError(err.empty()
                     ? "oracle scores unavailable: the session needs kv.oracle and the positions must be evaluated"
                     : err);
    }
}

Napi::Value OracleWorker::result() {
    Napi::Object r = Napi::Object::New(Env());
    r.Set("scores", to_f32_array(Env(), out));
    r.Set("device", used == KVZAP_DEVICE_CUDA ? "cuda" : "cpu");
    return r;
}

} // namespace kvzap
