// A Context's JS class and its synchronous methods; the work off the JS thread is in context-workers.cpp.
#include "context.h"

#include <algorithm>
#include <climits>
#include <memory>
#include <string>
#include <vector>

#include "context-params.h"
#include "context-workers.h"
#include "kvzap.h"
#include "llama-ext.h"
#include "options.h"

namespace kvzap {

Napi::FunctionReference Context::ctor;

Napi::Object Context::Init(Napi::Env env, Napi::Object exports) {
    Napi::Function fn = DefineClass(env, "Context",
                                    {
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
    ctor              = Napi::Persistent(fn);
    ctor.SuppressDestruct();
    exports.Set("Context", fn);
    return exports;
}

// new Context(model, {contextSize, batchSize, ubatchSize, threads, threadsBatch, flashAttention, typeK, typeV, kv})
Context::Context(const Napi::CallbackInfo & info) : Napi::ObjectWrap<Context>(info) {
    Napi::Env env         = info.Env();
    model                 = model_holder(arg(info, 0));
    const llama_model * m = model->model;
    std::shared_ptr<kvzap_params> kz;
    llama_context_params cp = read_context_params(arg(info, 1), kz);
    cp.abort_callback       = [](void * data) -> bool { return static_cast<std::atomic<bool> *>(data)->load(); };
    cp.abort_callback_data  = &abort_flag;
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
    busy       = true;
    abort_flag = false;
}

void Context::end() {
    busy = false;
    if (dispose_pending) free_ctx();
}

void Context::check_ready(Napi::Env env) const {
    if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
    if (busy) throw Napi::Error::New(env, "the context is busy with another evaluation");
}

// An optional callback argument: undefined, or a function.
static Napi::Function callback_arg(const Napi::CallbackInfo & info, size_t i, const char * name) {
    const Napi::Value v = arg(info, i);
    if (v.IsUndefined()) return Napi::Function();
    if (!v.IsFunction()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a function");
    return v.As<Napi::Function>();
}

Napi::Value Context::Abort(const Napi::CallbackInfo & info) {
    abort_flag = true;
    return info.Env().Undefined();
}

// logits() -> Float32Array of the last evaluated token's logits (a copy)
Napi::Value Context::Logits(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    check_ready(env);
    const float * lg = llama_get_logits_ith(ctx, -1);
    if (!lg) throw Napi::Error::New(env, "no logits: evaluate tokens first");
    int n_vocab            = llama_vocab_n_tokens(llama_model_get_vocab(model->model));
    Napi::Float32Array out = Napi::Float32Array::New(env, n_vocab);
    std::copy(lg, lg + n_vocab, out.Data());
    return out;
}

// trim(n) -> tokens kept: n, or 0 when the memory had to be cleared
Napi::Value Context::Trim(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    check_ready(env);
    int32_t n = (int32_t)read_integer(arg(info, 0), "trim(tokens)", 0, n_past);
    // A memory that cannot continue from n exactly as a fresh one would (KVzap, once pairs the next query sees
    // are gone) starts over: the caller evaluates the tokens again.
    if (!llama_memory_seq_rm(llama_get_memory(ctx), 0, n, -1)) {
        llama_memory_clear(llama_get_memory(ctx), true);
        n_past = 0;
        return Napi::Number::New(env, 0);
    }
    n_past = n;
    return Napi::Number::New(env, n);
}

Napi::Value Context::Clear(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    check_ready(env);
    llama_memory_clear(llama_get_memory(ctx), true);
    n_past = 0;
    return env.Undefined();
}

Napi::Value Context::MemoryStats(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
    double kv = 0, compute = 0, model_bytes = 0;
    for (const auto & [buft, mb] : llama_get_memory_breakdown(ctx)) {
        kv += (double)mb.context;
        compute += (double)mb.compute;
        model_bytes += (double)mb.model;
    }
    Napi::Object o = Napi::Object::New(env);
    kvzap_stats z  = kvzap_get_stats(llama_get_memory(ctx));
    if (z.active) {
        o.Set("policy", kvzap_policy_name(z.policy));
        o.Set("bytesInUse", (double)z.bytes_in_use);
        o.Set("bytesFullEquivalent", (double)z.bytes_full_equivalent);
        o.Set("bytesFullAllocation", (double)z.bytes_full_allocation);
        o.Set("poolBytes", (double)z.pool_bytes);
        o.Set("poolReservedBytes", (double)z.pool_reserved_bytes);
    } else {
        o.Set("policy", "full");
        o.Set("bytesInUse", kv);
        o.Set("bytesFullEquivalent", kv);
        o.Set("bytesFullAllocation", kv);
        o.Set("poolBytes", kv);
    }
    o.Set("computeBytes", compute);
    o.Set("modelBytes", model_bytes);
    o.Set("tokens", n_past);
    return o;
}

// kvStats() -> null (full cache) | {policy, tau, tauEffective, window, blockSize, blockBytes, poolBlocks, blocksInUse,
//   bytesInUse, bytesFullEquivalent, bytesFullAllocation, poolBytes, poolReservedBytes, poolChunkBytes, poolDevice,
//   highWaterBlocks, contextSize,
//   tokens, evicted, budgetEvicted, surrogateShare, hostMs, layers: [{entries: [h], blocks: [h]}]}
Napi::Value Context::KvStats(const Napi::CallbackInfo & info) {
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
    o.Set("blockBytes", (double)z.block_bytes);
    o.Set("poolBlocks", (double)z.pool_blocks);
    o.Set("blocksInUse", (double)z.blocks_in_use);
    o.Set("bytesInUse", (double)z.bytes_in_use);
    o.Set("bytesFullEquivalent", (double)z.bytes_full_equivalent);
    o.Set("bytesFullAllocation", (double)z.bytes_full_allocation);
    o.Set("poolBytes", (double)z.pool_bytes);
    o.Set("poolReservedBytes", (double)z.pool_reserved_bytes);
    o.Set("poolChunkBytes", (double)z.pool_chunk_bytes);
    o.Set("poolDevice", z.pool_device >= 0 ? Napi::Value(Napi::Number::New(env, z.pool_device)) : env.Null());
    o.Set("highWaterBlocks", (double)z.high_water_blocks);
    o.Set("contextSize", z.n_ctx);
    o.Set("tokens", (double)z.tokens);
    o.Set("evicted", (double)z.evicted);
    o.Set("budgetEvicted", (double)z.budget_evicted);
    o.Set("surrogateShare", z.surrogate_flops_share);
    o.Set("hostMs", z.host_ms);
    Napi::Array layers = Napi::Array::New(env, z.n_layer);
    for (int32_t il = 0; il < z.n_layer; il++) {
        Napi::Int32Array entries = Napi::Int32Array::New(env, z.n_head_kv);
        Napi::Int32Array blocks  = Napi::Int32Array::New(env, z.n_head_kv);
        for (int32_t h = 0; h < z.n_head_kv; h++) {
            entries[h] = z.heads[(size_t)il * z.n_head_kv + h].entries;
            blocks[h]  = z.heads[(size_t)il * z.n_head_kv + h].blocks;
        }
        Napi::Object lo = Napi::Object::New(env);
        lo.Set("entries", entries);
        lo.Set("blocks", blocks);
        layers.Set((uint32_t)il, lo);
    }
    o.Set("layers", layers);
    return o;
}

Napi::Value Context::rows(const Napi::CallbackInfo & info, bool hidden) {
    Napi::Env env = info.Env();
    check_ready(env);
    const llama_model * m  = model->model;
    const int32_t il       = (int32_t)read_integer(arg(info, 0), "layer", 0, llama_model_n_layer(m) - 1);
    const int32_t p0       = (int32_t)read_integer(arg(info, 1), "p0", 0, n_past);
    const int32_t p1       = (int32_t)read_integer(arg(info, 2), "p1", p0, n_past);
    const int32_t width    = hidden ? llama_model_n_embd(m) : llama_model_n_head_kv(m);
    Napi::Float32Array out = Napi::Float32Array::New(env, (size_t)(p1 - p0) * width);
    const bool ok          = hidden ? kvzap_get_hidden(llama_get_memory(ctx), il, p0, p1, out.Data())
                                    : kvzap_get_scores(llama_get_memory(ctx), il, p0, p1, out.Data());
    if (!ok)
        throw Napi::Error::New(
            env, hidden ? "no captured hidden states for that range" : "no surrogate scores for that range");
    return out;
}

// kvScores(layer, p0, p1) -> Float32Array [pos][kv head]
Napi::Value Context::KvScores(const Napi::CallbackInfo & info) {
    return rows(info, false);
}

// kvHidden(layer, p0, p1) -> Float32Array [pos][n_embd] (needs kv.captureHidden)
Napi::Value Context::KvHidden(const Napi::CallbackInfo & info) {
    return rows(info, true);
}

// setEvicting(false): pairs of tokens decoded from now on are never dropped by the threshold
Napi::Value Context::SetEvicting(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
    kvzap_set_evicting(llama_get_memory(ctx), read_bool(arg(info, 0), "setEvicting(evicting)"));
    return env.Undefined();
}

// oracleRows(layer, p0, p1) -> {q, k, v} Float32Arrays (oracle memories; for tests)
Napi::Value Context::OracleRows(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    check_ready(env);
    const int32_t il = (int32_t)read_integer(arg(info, 0), "layer", 0, llama_model_n_layer(model->model) - 1);
    const int32_t p0 = (int32_t)read_integer(arg(info, 1), "p0", 0, n_past);
    const int32_t p1 = (int32_t)read_integer(arg(info, 2), "p1", p0, n_past);
    std::vector<float> q, k, v;
    if (!kvzap_oracle_rows(llama_get_memory(ctx), il, p0, p1, q, k, v)) {
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
    check_ready(env);
    const size_t size         = llama_state_get_size(ctx);
    Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(env, size);
    const size_t written      = llama_state_get_data(ctx, buf.Data(), size);
    if (written == 0) throw Napi::Error::New(env, "could not save the state: " + take_last_error());
    return Napi::Buffer<uint8_t>::Copy(env, buf.Data(), written);
}

// loadState(Buffer): restores a saved state; returns the tokens held
Napi::Value Context::LoadState(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    check_ready(env);
    if (!arg(info, 0).IsBuffer()) throw Napi::TypeError::New(env, "loadState(state) needs a Buffer");
    Napi::Buffer<uint8_t> buf = info[0].As<Napi::Buffer<uint8_t>>();
    size_t read               = 0;
    try {
        read = llama_state_set_data(ctx, buf.Data(), buf.Length());
    } catch (const std::exception & e) {
        record_error(e.what());
    }
    if (read == 0) {
        n_past = llama_memory_seq_pos_max(llama_get_memory(ctx), 0) + 1; // a failed load leaves the memory cleared
        throw Napi::Error::New(env, "could not load the state: " + take_last_error());
    }
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
    // ubatches that ran the previous ubatch's graph again instead of building one (llama.cpp's graph reuse)
    o.Set("graphsReused", llama_perf_context(ctx).n_reused);
    return o;
}

Napi::Value Context::Dispose(const Napi::CallbackInfo & info) {
    if (busy) {
        abort_flag      = true;
        dispose_pending = true;
    } else {
        free_ctx();
    }
    return info.Env().Undefined();
}

// Claims the context for w and queues it; if the claim fails (disposed, busy), w is freed unqueued.
template <typename W>
static Napi::Value queue(Context * c, Napi::Env env, std::unique_ptr<W> w) {
    c->begin(env);
    Napi::Promise p = w->promise();
    w.release()->Queue(); // an N-API async worker deletes itself once it has settled
    return p;
}

// evaluate(Int32Array tokens, onProgress?, allLogits?) -> Promise<{tokens, ms, aborted}>
Napi::Value Context::Evaluate(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
    std::vector<llama_token> toks =
        read_tokens(arg(info, 0), "evaluate(tokens)", llama_vocab_n_tokens(llama_model_get_vocab(model->model)));
    if (toks.empty()) throw Napi::RangeError::New(env, "nothing to evaluate");
    if ((int64_t)n_past + (int64_t)toks.size() > (int64_t)llama_n_ctx(ctx)) {
        throw Napi::RangeError::New(env, "the tokens do not fit in the context (" +
                                             std::to_string(n_past + toks.size()) + " > " +
                                             std::to_string(llama_n_ctx(ctx)) + ")");
    }
    Napi::Function progress = callback_arg(info, 1, "evaluate(onProgress)");
    const bool all_logits   = read_bool(arg(info, 2), "evaluate(allLogits)", false);
    return queue(this, env, std::make_unique<EvaluateWorker>(env, this, std::move(toks), progress, all_logits));
}

// generate({maxTokens, temperature, topK, topP, minP, seed, repeatPenalty, repeatLastN}, onToken?)
//   -> Promise<{tokens: Int32Array, decoded, reason: "eog"|"maxTokens"|"abort"|"contextFull", ms}>
// Samples from the last evaluated logits; every sampled token but the last one is decoded into memory.
Napi::Value Context::Generate(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    const OptionReader r(arg(info, 0), "options");
    const int32_t max_tokens = (int32_t)r.integer("maxTokens", 1, INT32_MAX, 256);
    const SamplerParams sp   = read_sampler_params(r);
    if (!ctx) throw Napi::Error::New(env, "the context has been disposed");
    if (n_past == 0) throw Napi::Error::New(env, "evaluate a prompt before generating");
    Napi::Function on_token = callback_arg(info, 1, "generate(onToken)");
    return queue(this, env, std::make_unique<GenerateWorker>(env, this, sp, max_tokens, on_token));
}

// oracleScores(c0, c1, q0, q1, device = 'auto') -> Promise<{scores: Float32Array [layer][i - c0][kv head], device}>
// (KVzip+ s+, computed off the JS thread, on the CPU or CUDA)
Napi::Value Context::OracleScores(const Napi::CallbackInfo & info) {
    Napi::Env env                = info.Env();
    static const char * names[4] = { "oracleScores(c0)", "oracleScores(c1)", "oracleScores(q0)", "oracleScores(q1)" };
    int32_t v[4];
    for (int i = 0; i < 4; i++) v[i] = (int32_t)read_integer(arg(info, i), names[i], 0, n_past);
    if (v[1] < v[0] || v[3] < v[2])
        throw Napi::RangeError::New(env, "oracle ranges must lie within the evaluated positions");
    if (v[1] > v[3])
        throw Napi::RangeError::New(
            env, "the scored context must end where the queries end or before (no query sees a later key)");
    const kvzap_device device =
        arg(info, 4).IsUndefined()
            ? KVZAP_DEVICE_AUTO
            : (kvzap_device)read_enum(
                  arg(info, 4), "the oracle device",
                  { { "auto", KVZAP_DEVICE_AUTO }, { "cpu", KVZAP_DEVICE_CPU }, { "cuda", KVZAP_DEVICE_CUDA } });
    return queue(this, env, std::make_unique<OracleWorker>(env, this, v[0], v[1], v[2], v[3], device));
}

Napi::Object init_context(Napi::Env env, Napi::Object exports) {
    return Context::Init(env, exports);
}

} // namespace kvzap
