// A Context's JS class and its synchronous methods; the work off the JS thread is in context-workers.cpp.
#include "context.h"

#include <algorithm>
#include <string>
#include <vector>

#include "context-params.h"
#include "context-workers.h"
#include "kvzap.h"
#include "llama-ext.h"

namespace kvzap {

Napi::FunctionReference Context::ctor;

Napi::Object Context::Init(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(env, "Context", {
        InstanceMethod("evaluate", &Context::Evaluate),
        InstanceMethod("generate", &Context::Generate),
        InstanceMethod("abort", &Context::Abort),
        InstanceMethod("logits", &Context::Logits),
        InstanceMethod("trim", &Context::Trim),
        InstanceMethod("clear", &Context::Clear),
        InstanceMethod("memoryStats", &Context::MemoryStats),
        InstanceMethod("info", &Context::InfoJs),
        InstanceMethod("kvStats", &Context::KvStats),
        InstanceMethod("kvScores", &Context::KvScores),
        InstanceMethod("kvHidden", &Context::KvHidden),
        InstanceMethod("setEvicting", &Context::SetEvicting),
        InstanceMethod("saveState", &Context::SaveState),
        InstanceMethod("oracleScores", &Context::OracleScores),
        InstanceMethod("oracleRows", &Context::OracleRows),
        InstanceMethod("loadState", &Context::LoadState),
        InstanceMethod("dispose", &Context::Dispose),
    });
    ctor = Napi::Persistent(fn);
    ctor.SuppressDestruct();
    exports.Set("Context", fn);
    return exports;
}

// new Context(model, {contextSize, batchSize, ubatchSize, threads, threadsBatch, flashAttention, typeK, typeV, kv})
Context::Context(const Napi::CallbackInfo & info) : Napi::ObjectWrap<Context>(info) {
    Napi::Env env = info.Env();
    model = model_holder(info[0]);
    const llama_model * m = model->model;
    std::shared_ptr<kvzap_params> kz;
    llama_context_params cp = read_context_params(env, info.Length() > 1 ? info[1] : env.Undefined(), kz);
    cp.abort_callback = [](void * data) -> bool { return static_cast<std::atomic<bool> *>(data)->load(); };
    cp.abort_callback_data = &abort_flag;
    take_last_error();
    if (kz) kvzap_set_next_params(kz);
    ctx = llama_init_from_model(const_cast<llama_model *>(m), cp);
    kvzap_set_next_params(nullptr);
    if (ctx && kz) kvzap_active = true;
    if (!ctx) {
        std::string why = take_last_error();
        throw Napi::Error::New(env, why.empty() ? "llama.cpp could not create the context" : why);
    }
}

void Context::free_ctx() {
    if (ctx) {
        llama_free(ctx);
        ctx = nullptr;
        model.reset();
    }
}

void Context::begin(Napi::Env env) {
    if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
    if (busy) throw Napi::Error::New(env, "the context is busy with another evaluation");
    busy = true;
    abort_flag = false;
}

void Context::end() {
    busy = false;
    if (dispose_pending) free_ctx();
}

Napi::Value Context::Abort(const Napi::CallbackInfo & info) {
    abort_flag = true;
    return info.Env().Undefined();
}

// logits() -> Float32Array of the last evaluated token's logits (a copy)
Napi::Value Context::Logits(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!ctx || busy) throw Napi::Error::New(env, "the context is not ready");
    const float * lg = llama_get_logits_ith(ctx, -1);
    if (!lg) throw Napi::Error::New(env, "no logits: evaluate tokens first");
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model->model));
    Napi::Float32Array out = Napi::Float32Array::New(env, n_vocab);
    std::copy(lg, lg + n_vocab, out.Data());
    return out;
}

// trim(n): keep only the first n tokens in memory
Napi::Value Context::Trim(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!ctx || busy) throw Napi::Error::New(env, "the context is not ready");
    int32_t n = info[0].As<Napi::Number>().Int32Value();
    if (n < 0 || n > n_past) throw Napi::RangeError::New(env, "trim beyond the tokens in memory");
    if (!llama_memory_seq_rm(llama_get_memory(ctx), 0, n, -1)) {
        throw Napi::Error::New(env, "this memory cannot remove a suffix");
    }
    n_past = n;
    return env.Undefined();
}

Napi::Value Context::Clear(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!ctx || busy) throw Napi::Error::New(env, "the context is not ready");
    llama_memory_clear(llama_get_memory(ctx), true);
    n_past = 0;
    return env.Undefined();
}

Napi::Value Context::MemoryStats(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
    double kv = 0, compute = 0, model_bytes = 0;
    for (const auto & [buft, mb] : llama_get_memory_breakdown(ctx)) {
        kv += (double) mb.context;
        compute += (double) mb.compute;
        model_bytes += (double) mb.model;
    }
    Napi::Object o = Napi::Object::New(env);
    kvzap_stats z = kvzap_get_stats(llama_get_memory(ctx));
    if (z.active) {
        o.Set("policy", z.policy == KVZAP_POLICY_WINDOW ? "window" : "kvzap");
        o.Set("bytesInUse", (double) z.bytes_in_use);
        o.Set("bytesFullEquivalent", (double) z.bytes_full_equivalent);
        o.Set("poolBytes", kv);
    } else {
        o.Set("policy", "full");
        o.Set("bytesInUse", kv);
        o.Set("bytesFullEquivalent", kv);
    }
    o.Set("computeBytes", compute);
    o.Set("modelBytes", model_bytes);
    o.Set("tokens", n_past);
    return o;
}

// kvStats() -> null (full cache) | {policy, tau, tauEffective, window, blockSize, blockBytes, poolBlocks, blocksInUse,
//   bytesInUse, bytesFullEquivalent, tokens, evicted, budgetEvicted, surrogateShare, layers: [{entries: [h], blocks: [h]}]}
Napi::Value Context::KvStats(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
    kvzap_stats z = kvzap_get_stats(llama_get_memory(ctx));
    if (!z.active) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("policy", z.policy == KVZAP_POLICY_WINDOW ? "window" : "kvzap");
    o.Set("tau", z.tau);
    o.Set("tauEffective", z.tau_effective);
    o.Set("window", z.window);
    o.Set("blockSize", z.block_size);
    o.Set("blockBytes", (double) z.block_bytes);
    o.Set("poolBlocks", (double) z.pool_blocks);
    o.Set("blocksInUse", (double) z.blocks_in_use);
    o.Set("bytesInUse", (double) z.bytes_in_use);
    o.Set("bytesFullEquivalent", (double) z.bytes_full_equivalent);
    o.Set("tokens", (double) z.tokens);
    o.Set("evicted", (double) z.evicted);
    o.Set("budgetEvicted", (double) z.budget_evicted);
    o.Set("surrogateShare", z.surrogate_flops_share);
    Napi::Array layers = Napi::Array::New(env, z.n_layer);
    for (int32_t il = 0; il < z.n_layer; il++) {
        Napi::Int32Array entries = Napi::Int32Array::New(env, z.n_head_kv);
        Napi::Int32Array blocks = Napi::Int32Array::New(env, z.n_head_kv);
        for (int32_t h = 0; h < z.n_head_kv; h++) {
            entries[h] = z.heads[(size_t) il * z.n_head_kv + h].entries;
            blocks[h] = z.heads[(size_t) il * z.n_head_kv + h].blocks;
        }
        Napi::Object lo = Napi::Object::New(env);
        lo.Set("entries", entries);
        lo.Set("blocks", blocks);
        layers.Set((uint32_t) il, lo);
    }
    o.Set("layers", layers);
    return o;
}

Napi::Value Context::rows(const Napi::CallbackInfo & info, bool hidden) {
    Napi::Env env = info.Env();
    if (!ctx || busy) throw Napi::Error::New(env, "the context is not ready");
    const int32_t il = info[0].As<Napi::Number>().Int32Value();
    const int32_t p0 = info[1].As<Napi::Number>().Int32Value();
    const int32_t p1 = info[2].As<Napi::Number>().Int32Value();
    const llama_model * m = model->model;
    const int32_t width = hidden ? llama_model_n_embd(m) : llama_model_n_head_kv(m);
    if (p0 < 0 || p1 < p0) throw Napi::RangeError::New(env, "bad position range");
    Napi::Float32Array out = Napi::Float32Array::New(env, (size_t) (p1 - p0) * width);
    const bool ok = hidden ? kvzap_get_hidden(llama_get_memory(ctx), il, p0, p1, out.Data())
                           : kvzap_get_scores(llama_get_memory(ctx), il, p0, p1, out.Data());
    if (!ok) throw Napi::Error::New(env, hidden ? "no captured hidden states for that range" : "no surrogate scores for that range");
    return out;
}

// kvScores(layer, p0, p1) -> Float32Array [pos][kv head]
Napi::Value Context::KvScores(const Napi::CallbackInfo & info) { return rows(info, false); }

// kvHidden(layer, p0, p1) -> Float32Array [pos][n_embd] (needs kv.captureHidden)
Napi::Value Context::KvHidden(const Napi::CallbackInfo & info) { return rows(info, true); }

// setEvicting(false): pairs of tokens decoded from now on are never dropped by the threshold
Napi::Value Context::SetEvicting(const Napi::CallbackInfo & info) {
    kvzap_set_evicting(llama_get_memory(ctx), info[0].ToBoolean().Value());
    return info.Env().Undefined();
}

// oracleRows(layer, p0, p1) -> {q, k, v} Float32Arrays (oracle memories; for tests)
Napi::Value Context::OracleRows(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!ctx || busy) throw Napi::Error::New(env, "the context is not ready");
    std::vector<float> q, k, v;
    if (!kvzap_oracle_rows(llama_get_memory(ctx), info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(),
                           info[2].As<Napi::Number>().Int32Value(), q, k, v)) {
        throw Napi::Error::New(env, "no oracle rows for that range");
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("q", to_f32_array(env, q));
    o.Set("k", to_f32_array(env, k));
    o.Set("v", to_f32_array(env, v));
    return o;
}

// saveState() -> Buffer: the memory (and last logits) as llama_state_get_data writes them
Napi::Value Context::SaveState(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!ctx || busy) throw Napi::Error::New(env, "the context is not ready");
    const size_t size = llama_state_get_size(ctx);
    Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(env, size);
    const size_t written = llama_state_get_data(ctx, buf.Data(), size);
    if (written == 0) throw Napi::Error::New(env, "could not save the state: " + take_last_error());
    return Napi::Buffer<uint8_t>::Copy(env, buf.Data(), written);
}

// loadState(Buffer): restores a saved state; returns the tokens held
Napi::Value Context::LoadState(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!ctx || busy) throw Napi::Error::New(env, "the context is not ready");
    Napi::Buffer<uint8_t> buf = info[0].As<Napi::Buffer<uint8_t>>();
    size_t read = 0;
    try {
        read = llama_state_set_data(ctx, buf.Data(), buf.Length());
    } catch (const std::exception & e) {
        record_error(e.what());
    }
    if (read == 0) throw Napi::Error::New(env, "could not load the state: " + take_last_error());
    n_past = llama_memory_seq_pos_max(llama_get_memory(ctx), 0) + 1;
    return Napi::Number::New(env, n_past);
}

Napi::Value Context::InfoJs(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
    Napi::Object o = Napi::Object::New(env);
    o.Set("contextSize", llama_n_ctx(ctx));
    o.Set("batchSize", llama_n_batch(ctx));
    o.Set("ubatchSize", llama_n_ubatch(ctx));
    o.Set("threads", llama_n_threads(ctx));
    o.Set("threadsBatch", llama_n_threads_batch(ctx));
    o.Set("tokens", n_past);
    return o;
}

Napi::Value Context::Dispose(const Napi::CallbackInfo & info) {
    if (busy) {
        abort_flag = true;
        dispose_pending = true;
    } else {
        free_ctx();
    }
    return info.Env().Undefined();
}

// evaluate(Int32Array tokens, onProgress?, allLogits?) -> Promise<{tokens, ms, aborted}>
Napi::Value Context::Evaluate(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    Napi::Int32Array arr = info[0].As<Napi::Int32Array>();
    std::vector<llama_token> toks(arr.Data(), arr.Data() + arr.ElementLength());
    if (toks.empty()) throw Napi::RangeError::New(env, "nothing to evaluate");
    if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
    if ((int64_t) n_past + (int64_t) toks.size() > (int64_t) llama_n_ctx(ctx)) {
        throw Napi::RangeError::New(env, "the tokens do not fit in the context (" + std::to_string(n_past + toks.size()) + " > " + std::to_string(llama_n_ctx(ctx)) + ")");
    }
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model->model));
    for (llama_token t : toks) {
        if (t < 0 || t >= n_vocab) throw Napi::RangeError::New(env, "token id out of range: " + std::to_string(t));
    }
    Napi::Function progress;
    if (info.Length() > 1 && info[1].IsFunction()) progress = info[1].As<Napi::Function>();
    const bool all_logits = info.Length() > 2 && info[2].ToBoolean().Value();
    begin(env);
    auto * w = new EvaluateWorker(env, this, std::move(toks), progress, all_logits);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

// generate({maxTokens, temperature, topK, topP, minP, seed, repeatPenalty, repeatLastN}, onToken?)
//   -> Promise<{tokens: Int32Array, decoded, reason: "eog"|"maxTokens"|"abort"|"contextFull", ms}>
// Samples from the last evaluated logits; every sampled token but the last one is decoded into memory.
Napi::Value Context::Generate(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    SamplerParams sp;
    int32_t max_tokens = 256;
    if (info.Length() > 0 && info[0].IsObject()) {
        Napi::Object o = info[0].As<Napi::Object>();
        auto num = [&](const char * k, double def) {
            return o.Has(k) && o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().DoubleValue() : def;
        };
        max_tokens = (int32_t) num("maxTokens", max_tokens);
        sp.temperature = (float) num("temperature", sp.temperature);
        sp.top_k = (int32_t) num("topK", sp.top_k);
        sp.top_p = (float) num("topP", sp.top_p);
        sp.min_p = (float) num("minP", sp.min_p);
        sp.seed = (uint32_t) num("seed", sp.seed);
        sp.repeat_penalty = (float) num("repeatPenalty", sp.repeat_penalty);
        sp.repeat_last_n = (int32_t) num("repeatLastN", sp.repeat_last_n);
    }
    if (max_tokens < 1) throw Napi::RangeError::New(env, "maxTokens must be at least 1");
    if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
    if (n_past == 0) throw Napi::Error::New(env, "evaluate a prompt before generating");
    Napi::Function on_token;
    if (info.Length() > 1 && info[1].IsFunction()) on_token = info[1].As<Napi::Function>();
    begin(env);
    auto * w = new GenerateWorker(env, this, sp, max_tokens, on_token);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

// oracleScores(c0, c1, q0, q1, device = 'auto') -> Promise<{scores: Float32Array [layer][i - c0][kv head], device}>
// (KVzip+ s+, computed off the JS thread, on the CPU or CUDA)
Napi::Value Context::OracleScores(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    int32_t v[4];
    for (int i = 0; i < 4; i++) v[i] = info[i].As<Napi::Number>().Int32Value();
    if (v[0] < 0 || v[1] < v[0] || v[2] < 0 || v[3] < v[2] || v[1] > n_past || v[3] > n_past) {
        throw Napi::RangeError::New(env, "oracle ranges must lie within the evaluated positions");
    }
    if (v[1] > v[3]) throw Napi::RangeError::New(env, "the scored context must end where the queries end or before (no query sees a later key)");
    kvzap_device device = KVZAP_DEVICE_AUTO;
    if (info.Length() > 4 && info[4].IsString()) {
        const std::string d = info[4].As<Napi::String>().Utf8Value();
        if (d == "cpu") device = KVZAP_DEVICE_CPU;
        else if (d == "cuda") device = KVZAP_DEVICE_CUDA;
        else if (d != "auto") throw Napi::TypeError::New(env, "the oracle device must be auto, cpu or cuda");
    }
    begin(env);
    auto * w = new OracleWorker(env, this, v[0], v[1], v[2], v[3], device);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

Napi::Object init_context(Napi::Env env, Napi::Object exports) { return Context::Init(env, exports); }

}  // namespace kvzap
