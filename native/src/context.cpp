// An inference context: KV memory, prompt evaluation and streamed generation, all heavy work off the JS thread.
#include "addon.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "kvzap.h"
#include "llama-ext.h"

namespace kvzap {

struct SamplerParams {
    float temperature = 0.8f;
    int32_t top_k = 40;
    float top_p = 0.95f;
    float min_p = 0.05f;
    uint32_t seed = LLAMA_DEFAULT_SEED;
    float repeat_penalty = 1.0f;
    int32_t repeat_last_n = 64;
};

static double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

static llama_sampler * make_sampler(const SamplerParams & p, const llama_vocab * vocab) {
    llama_sampler_chain_params cp = llama_sampler_chain_default_params();
    cp.no_perf = true;
    llama_sampler * chain = llama_sampler_chain_init(cp);
    if (p.repeat_penalty != 1.0f) {
        llama_sampler_chain_add(chain, llama_sampler_init_penalties(llama_vocab_n_tokens(vocab), p.repeat_last_n, p.repeat_penalty, 0.0f, 0.0f));
    }
    if (p.temperature <= 0.0f) {
        llama_sampler_chain_add(chain, llama_sampler_init_greedy());
        return chain;
    }
    if (p.top_k > 0) llama_sampler_chain_add(chain, llama_sampler_init_top_k(p.top_k));
    if (p.top_p < 1.0f) llama_sampler_chain_add(chain, llama_sampler_init_top_p(p.top_p, 1));
    if (p.min_p > 0.0f) llama_sampler_chain_add(chain, llama_sampler_init_min_p(p.min_p, 1));
    llama_sampler_chain_add(chain, llama_sampler_init_temp(p.temperature));
    llama_sampler_chain_add(chain, llama_sampler_init_dist(p.seed));
    return chain;
}

class Context : public Napi::ObjectWrap<Context> {
  public:
    static Napi::FunctionReference ctor;
    llama_context * ctx = nullptr;
    std::shared_ptr<ModelHolder> model;
    std::atomic<bool> abort_flag{false};
    bool busy = false;
    bool dispose_pending = false;
    bool kvzap_active = false;
    int32_t n_past = 0;  // tokens held in memory for sequence 0

    // kv: {policy: "window"|"kvzap", tau, window, sinks, blockSize, budgetBytes, decodeEviction, reference,
    //      captureHidden, typeK, typeV, surrogate: {kind: "linear"|"mlp", hidden, layers: [{w1, b1, w2?, b2?}]}}
    static std::shared_ptr<kvzap_params> parse_kvzap(Napi::Env env, Napi::Object o, llama_context_params & cp) {
        auto p = std::make_shared<kvzap_params>();
        auto num = [&](const char * k, double def) {
            return o.Has(k) && o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().DoubleValue() : def;
        };
        auto flag = [&](const char * k, bool def) { return o.Has(k) && o.Get(k).IsBoolean() ? o.Get(k).As<Napi::Boolean>().Value() : def; };
        std::string policy = o.Has("policy") && o.Get("policy").IsString() ? o.Get("policy").As<Napi::String>().Utf8Value() : "kvzap";
        if (policy == "window") p->policy = KVZAP_POLICY_WINDOW;
        else if (policy == "kvzap") p->policy = KVZAP_POLICY_KVZAP;
        else if (policy == "random") p->policy = KVZAP_POLICY_RANDOM;
        else if (policy == "scores") p->policy = KVZAP_POLICY_SCORES;
        else throw Napi::TypeError::New(env, "kv.policy must be window, kvzap, random or scores");
        p->tau = (float) num("tau", p->tau);
        if (p->policy == KVZAP_POLICY_RANDOM) {
            p->keep = (float) num("keep", 1.0);
            if (!(p->keep >= 0.0f && p->keep <= 1.0f)) throw Napi::RangeError::New(env, "kv.keep must be in [0, 1]");
            p->seed = (uint64_t) num("seed", 0);
            p->tau = 1.0f - p->keep;
        }
        if (p->policy == KVZAP_POLICY_SCORES) {
            if (!o.Has("scores") || !o.Get("scores").IsArray()) throw Napi::TypeError::New(env, "kv.scores must be an array of Float32Array, one per layer");
            Napi::Array sa = o.Get("scores").As<Napi::Array>();
            for (uint32_t i = 0; i < sa.Length(); i++) {
                if (!sa.Get(i).IsTypedArray()) throw Napi::TypeError::New(env, "kv.scores must be an array of Float32Array, one per layer");
                Napi::Float32Array a = sa.Get(i).As<Napi::Float32Array>();
                p->external_scores.emplace_back(a.Data(), a.Data() + a.ElementLength());
            }
        }
        p->window = (int32_t) num("window", p->window);
        p->n_sink = (int32_t) num("sinks", p->policy == KVZAP_POLICY_WINDOW ? 4 : 0);
        p->block_size = (int32_t) num("blockSize", p->block_size);
        p->budget_bytes = (int64_t) num("budgetBytes", 0);
        p->decode_eviction = flag("decodeEviction", true);
        p->reference = flag("reference", false);
        p->capture_hidden = flag("captureHidden", false);
        p->oracle = flag("oracle", false);
        if ((p->policy == KVZAP_POLICY_RANDOM || p->policy == KVZAP_POLICY_SCORES) && (p->reference || p->oracle)) {
            throw Napi::TypeError::New(env, "the random and scores policies run on the block memory only (no reference or oracle mode)");
        }
        p->type_k = (ggml_type) (int) num("typeK", GGML_TYPE_F16);
        p->type_v = (ggml_type) (int) num("typeV", GGML_TYPE_F16);
        if (p->window < 0) throw Napi::RangeError::New(env, "kv.window must be >= 0");
        if (p->block_size < 1 || p->block_size > 4096) throw Napi::RangeError::New(env, "kv.blockSize must be in 1..4096");
        cp.type_k = p->type_k;
        cp.type_v = p->type_v;
        if (o.Has("surrogate") && o.Get("surrogate").IsObject()) {
            Napi::Object so = o.Get("surrogate").As<Napi::Object>();
            std::string kind = so.Get("kind").As<Napi::String>().Utf8Value();
            p->surrogate = kind == "mlp" ? KVZAP_SURROGATE_MLP : KVZAP_SURROGATE_LINEAR;
            p->hidden = so.Has("hidden") && so.Get("hidden").IsNumber() ? so.Get("hidden").As<Napi::Number>().Int32Value() : 0;
            Napi::Array layers = so.Get("layers").As<Napi::Array>();
            auto vec = [&](Napi::Object lo, const char * k) {
                std::vector<float> out;
                if (lo.Has(k) && lo.Get(k).IsTypedArray()) {
                    Napi::Float32Array a = lo.Get(k).As<Napi::Float32Array>();
                    out.assign(a.Data(), a.Data() + a.ElementLength());
                }
                return out;
            };
            for (uint32_t i = 0; i < layers.Length(); i++) {
                Napi::Object lo = layers.Get(i).As<Napi::Object>();
                p->layers.push_back({vec(lo, "w1"), vec(lo, "b1"), vec(lo, "w2"), vec(lo, "b2")});
            }
        }
        return p;
    }

    static Napi::Object Init(Napi::Env env, Napi::Object exports) {
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

    // new Context(model, {contextSize, batchSize, ubatchSize, threads, threadsBatch, flashAttention, typeK, typeV})
    explicit Context(const Napi::CallbackInfo & info) : Napi::ObjectWrap<Context>(info) {
        Napi::Env env = info.Env();
        model = model_holder(info[0]);
        const llama_model * m = model->model;
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = 0;
        if (info.Length() > 1 && info[1].IsObject()) {
            Napi::Object o = info[1].As<Napi::Object>();
            auto num = [&](const char * k, double def) {
                return o.Has(k) && o.Get(k).IsNumber() ? o.Get(k).As<Napi::Number>().DoubleValue() : def;
            };
            cp.n_ctx = (uint32_t) num("contextSize", 0);
            cp.n_batch = (uint32_t) num("batchSize", cp.n_batch);
            cp.n_ubatch = (uint32_t) num("ubatchSize", std::min<double>(cp.n_ubatch, cp.n_batch));
            cp.n_threads = (int32_t) num("threads", cp.n_threads);
            cp.n_threads_batch = (int32_t) num("threadsBatch", cp.n_threads);
            if (o.Has("flashAttention") && o.Get("flashAttention").IsBoolean()) {
                cp.flash_attn_type = o.Get("flashAttention").As<Napi::Boolean>().Value() ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
            }
            if (o.Has("typeK")) cp.type_k = (ggml_type) (int) num("typeK", cp.type_k);
            if (o.Has("typeV")) cp.type_v = (ggml_type) (int) num("typeV", cp.type_v);
        }
        std::shared_ptr<kvzap_params> kz;
        if (info.Length() > 1 && info[1].IsObject()) {
            Napi::Object o = info[1].As<Napi::Object>();
            if (o.Has("kv") && o.Get("kv").IsObject()) kz = parse_kvzap(env, o.Get("kv").As<Napi::Object>(), cp);
        }
        cp.n_seq_max = 1;
        cp.no_perf = false;
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

    ~Context() override { free_ctx(); }

    void free_ctx() {
        if (ctx) {
            llama_free(ctx);
            ctx = nullptr;
            model.reset();
        }
    }

    void begin(Napi::Env env) {
        if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
        if (busy) throw Napi::Error::New(env, "the context is busy with another evaluation");
        busy = true;
        abort_flag = false;
    }

    void end() {
        busy = false;
        if (dispose_pending) free_ctx();
    }

    Napi::Value Evaluate(const Napi::CallbackInfo & info);
    Napi::Value Generate(const Napi::CallbackInfo & info);

    Napi::Value Abort(const Napi::CallbackInfo & info) {
        abort_flag = true;
        return info.Env().Undefined();
    }

    // logits() -> Float32Array of the last evaluated token's logits (a copy)
    Napi::Value Logits(const Napi::CallbackInfo & info) {
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
    Napi::Value Trim(const Napi::CallbackInfo & info) {
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

    Napi::Value Clear(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        if (!ctx || busy) throw Napi::Error::New(env, "the context is not ready");
        llama_memory_clear(llama_get_memory(ctx), true);
        n_past = 0;
        return env.Undefined();
    }

    Napi::Value MemoryStats(const Napi::CallbackInfo & info) {
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
            o.Set("policy", kvzap_policy_name(z.policy));
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
    Napi::Value KvStats(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
        kvzap_stats z = kvzap_get_stats(llama_get_memory(ctx));
        if (!z.active) return env.Null();
        Napi::Object o = Napi::Object::New(env);
        o.Set("policy", kvzap_policy_name(z.policy));
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

    Napi::Value rows(const Napi::CallbackInfo & info, bool hidden) {
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
    Napi::Value KvScores(const Napi::CallbackInfo & info) { return rows(info, false); }
    // kvHidden(layer, p0, p1) -> Float32Array [pos][n_embd] (needs kv.captureHidden)
    Napi::Value KvHidden(const Napi::CallbackInfo & info) { return rows(info, true); }

    // setEvicting(false): pairs of tokens decoded from now on are never dropped by the threshold
    Napi::Value SetEvicting(const Napi::CallbackInfo & info) {
        kvzap_set_evicting(llama_get_memory(ctx), info[0].ToBoolean().Value());
        return info.Env().Undefined();
    }

    // oracleRows(layer, p0, p1) -> {q, k, v} Float32Arrays (oracle memories; for tests)
    Napi::Value OracleRows(const Napi::CallbackInfo & info) {
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

    // oracleScores(c0, c1, q0, q1, device = 'auto') -> Promise<{scores: Float32Array [layer][i - c0][kv head], device}>
    // (KVzip+ s+, computed off the JS thread, on the CPU or CUDA)
    Napi::Value OracleScores(const Napi::CallbackInfo & info);

    // saveState() -> Buffer: the memory (and last logits) as llama_state_get_data writes them
    Napi::Value SaveState(const Napi::CallbackInfo & info) {
        Napi::Env env = info.Env();
        if (!ctx || busy) throw Napi::Error::New(env, "the context is not ready");
        const size_t size = llama_state_get_size(ctx);
        Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(env, size);
        const size_t written = llama_state_get_data(ctx, buf.Data(), size);
        if (written == 0) throw Napi::Error::New(env, "could not save the state: " + take_last_error());
        return Napi::Buffer<uint8_t>::Copy(env, buf.Data(), written);
    }

    // loadState(Buffer): restores a saved state; returns the tokens held
    Napi::Value LoadState(const Napi::CallbackInfo & info) {
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

    Napi::Value InfoJs(const Napi::CallbackInfo & info) {
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

    Napi::Value Dispose(const Napi::CallbackInfo & info) {
        if (busy) {
            abort_flag = true;
            dispose_pending = true;
        } else {
            free_ctx();
        }
        return info.Env().Undefined();
    }
};

Napi::FunctionReference Context::ctor;

// Decodes `tokens` at positions n_past.., in batches of n_batch, logits for the last token only.
// Returns 0, 1 (aborted) or a negative llama_decode status; `done` counts tokens decoded.
static int decode_tokens(Context * c, const llama_token * toks, int32_t n, int32_t & done, const std::function<void(int32_t)> & progress,
                         bool all_logits = false) {
    const int32_t n_batch = (int32_t) llama_n_batch(c->ctx);
    llama_batch batch = llama_batch_init(n_batch, 0, 1);
    int status = 0;
    done = 0;
    while (done < n) {
        if (c->abort_flag.load()) {
            status = 1;
            break;
        }
        int32_t m = std::min(n_batch, n - done);
        batch.n_tokens = m;
        for (int32_t i = 0; i < m; i++) {
            batch.token[i] = toks[done + i];
            batch.pos[i] = c->n_past + i;
            batch.n_seq_id[i] = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i] = all_logits || (done + i == n - 1);
        }
        int rc;
        try {
            rc = llama_decode(c->ctx, batch);
        } catch (const std::exception & e) {
            record_error(e.what());
            rc = -3;
        }
        if (rc != 0) {
            // 2: aborted; ubatches already processed stay in memory, so re-read how many tokens it holds
            status = rc == 2 ? 1 : (rc < 0 ? rc : -rc);
            llama_pos pmax = llama_memory_seq_pos_max(llama_get_memory(c->ctx), 0);
            int32_t kept = pmax < 0 ? 0 : pmax + 1;
            done += std::max(0, kept - c->n_past);
            c->n_past = kept;
            break;
        }
        c->n_past += m;
        done += m;
        if (progress) progress(done);
    }
    llama_batch_free(batch);
    return status;
}

// Work a context does off the JS thread: it keeps the JS context alive while it runs and releases the context (end())
// before its promise settles, however the work ends.
template <typename Base> class ContextWorker : public PromiseWorker<Base> {
  public:
    ContextWorker(Napi::Env env, Context * c) : PromiseWorker<Base>(env), c(c), self(Napi::Persistent(c->Value())) {}

  protected:
    void settled() override { c->end(); }
    // A failed llama_decode, with what llama.cpp logged about it.
    void fail_decode(int status) {
        const std::string why = take_last_error();
        this->SetError("llama_decode failed (" + std::to_string(status) + ")" + (why.empty() ? "" : ": " + why));
    }
    Context * c;

  private:
    Napi::ObjectReference self;
};

class EvaluateWorker : public ContextWorker<Napi::AsyncProgressQueueWorker<int32_t>> {
  public:
    EvaluateWorker(Napi::Env env, Context * c, std::vector<llama_token> toks, Napi::Function progress, bool all_logits)
        : ContextWorker(env, c), toks(std::move(toks)), all_logits(all_logits) {
        if (!progress.IsEmpty()) on_progress = Napi::Persistent(progress);
    }

    void Execute(const ExecutionProgress & p) override {
        double t0 = now_ms();
        int32_t last_sent = 0;
        const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(c->model->model));
        int32_t collected = 0;
        status = decode_tokens(c, toks.data(), (int32_t) toks.size(), done, [&](int32_t d) {
            if (all_logits) {
                for (int32_t i = collected; i < d; i++) {
                    const float * lg = llama_get_logits_ith(c->ctx, i - collected);
                    logits.insert(logits.end(), lg, lg + n_vocab);
                }
                collected = d;
            }
            if (d - last_sent >= 256 || d == (int32_t) toks.size()) {
                last_sent = d;
                p.Send(&d, 1);
            }
        }, all_logits);
        ms = now_ms() - t0;
        kvzap_settle(llama_get_memory(c->ctx));
        if (status < 0) fail_decode(status);
    }
    void OnProgress(const int32_t * d, size_t n) override {
        if (!on_progress.IsEmpty() && n > 0) on_progress.Call({Napi::Number::New(Env(), d[n - 1])});
    }
    Napi::Value result() override {
        Napi::Object o = Napi::Object::New(Env());
        o.Set("tokens", done);
        o.Set("ms", ms);
        o.Set("aborted", status == 1);
        if (all_logits) o.Set("logits", to_f32_array(Env(), logits));
        return o;
    }

  private:
    std::vector<llama_token> toks;
    Napi::FunctionReference on_progress;
    int32_t done = 0;
    int status = 0;
    double ms = 0;
    bool all_logits;
    std::vector<float> logits;
};

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

class GenerateWorker : public ContextWorker<Napi::AsyncProgressQueueWorker<llama_token>> {
  public:
    GenerateWorker(Napi::Env env, Context * c, SamplerParams sp, int32_t max_tokens, Napi::Function on_token)
        : ContextWorker(env, c), sp(sp), max_tokens(max_tokens) {
        if (!on_token.IsEmpty()) on_token_ref = Napi::Persistent(on_token);
    }

    void Execute(const ExecutionProgress & p) override {
        const llama_vocab * vocab = llama_model_get_vocab(c->model->model);
        llama_sampler * smpl = make_sampler(sp, vocab);
        double t0 = now_ms();
        reason = "maxTokens";
        for (int32_t i = 0; i < max_tokens; i++) {
            if (c->abort_flag.load()) {
                reason = "abort";
                break;
            }
            llama_token t = llama_sampler_sample(smpl, c->ctx, -1);
            generated.push_back(t);
            p.Send(&t, 1);
            if (llama_vocab_is_eog(vocab, t)) {
                reason = "eog";
                break;
            }
            if (i + 1 == max_tokens) break;
            if (c->n_past >= (int32_t) llama_n_ctx(c->ctx)) {
                reason = "contextFull";
                break;
            }
            int32_t done = 0;
            int status = decode_tokens(c, &t, 1, done, nullptr);
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
        llama_sampler_free(smpl);
        kvzap_settle(llama_get_memory(c->ctx));
    }
    void OnProgress(const llama_token * toks, size_t n) override {
        if (on_token_ref.IsEmpty()) return;
        for (size_t i = 0; i < n; i++) on_token_ref.Call({Napi::Number::New(Env(), toks[i])});
    }
    Napi::Value result() override {
        Napi::Object o = Napi::Object::New(Env());
        Napi::Int32Array toks = Napi::Int32Array::New(Env(), generated.size());
        std::copy(generated.begin(), generated.end(), toks.Data());
        o.Set("tokens", toks);
        o.Set("decoded", decoded);
        o.Set("reason", reason);
        o.Set("ms", ms);
        return o;
    }

  private:
    SamplerParams sp;
    int32_t max_tokens;
    Napi::FunctionReference on_token_ref;
    std::vector<llama_token> generated;
    int32_t decoded = 0;
    std::string reason;
    double ms = 0;
};

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

class OracleWorker : public ContextWorker<Napi::AsyncWorker> {
  public:
    OracleWorker(Napi::Env env, Context * c, int32_t c0, int32_t c1, int32_t q0, int32_t q1, kvzap_device device)
        : ContextWorker(env, c), c0(c0), c1(c1), q0(q0), q1(q1), device(device) {}
    void Execute() override {
        const llama_model * m = c->model->model;
        out.resize((size_t) llama_model_n_layer(m) * (c1 - c0) * llama_model_n_head_kv(m));
        std::string err;
        if (!kvzap_oracle_scores(llama_get_memory(c->ctx), c0, c1, q0, q1, out.data(), llama_n_threads(c->ctx), device, &used, &err)) {
            SetError(err.empty() ? "oracle scores unavailable: the session needs kv.oracle and the positions must be evaluated" : err);
        }
    }
    Napi::Value result() override {
        Napi::Object r = Napi::Object::New(Env());
        r.Set("scores", to_f32_array(Env(), out));
        r.Set("device", used == KVZAP_DEVICE_CUDA ? "cuda" : "cpu");
        return r;
    }

  private:
    int32_t c0, c1, q0, q1;
    kvzap_device device, used = KVZAP_DEVICE_CPU;
    std::vector<float> out;
};

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
