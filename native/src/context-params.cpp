// What a new Context is created with (see context-params.h).
#include "context-params.h"

#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "options.h"

namespace kvzap {

// The most positions a context may hold: llama.cpp keeps them in int32, and more than this is no real request.
static constexpr int64_t MAX_CONTEXT = 1 << 24;

// surrogate: {kind: "linear"|"mlp", hidden, layers: [{w1, b1, w2?, b2?}]} (shapes are checked against the model
// when the memory is created)
static void read_surrogate(const OptionReader & r, kvzap_params & p) {
    p.surrogate = (kvzap_surrogate_kind)r.choice(
        "kind", { { "linear", KVZAP_SURROGATE_LINEAR }, { "mlp", KVZAP_SURROGATE_MLP } });
    p.hidden             = (int32_t)r.integer("hidden", 0, 1 << 20, 0);
    const Napi::Value lv = r.get("layers");
    if (!lv.IsArray()) throw Napi::TypeError::New(r.env, r.name("layers") + " must be an array of {w1, b1, w2?, b2?}");
    Napi::Array layers = lv.As<Napi::Array>();
    for (uint32_t i = 0; i < layers.Length(); i++) {
        const OptionReader lr(layers.Get(i), r.name("layers") + "[" + std::to_string(i) + "]");
        auto opt = [&](const char * k) {
            return lr.has(k) ? read_f32_array(lr.get(k), lr.name(k)) : std::vector<float>();
        };
        kvzap_layer_weights w = { read_f32_array(lr.get("w1"), lr.name("w1")),
                                  read_f32_array(lr.get("b1"), lr.name("b1")), opt("w2"), opt("b2") };
        if (p.surrogate == KVZAP_SURROGATE_MLP && (w.w2.empty() || w.b2.empty())) {
            throw Napi::TypeError::New(r.env,
                                       lr.name("w2") + " and " + lr.name("b2") + " are needed by an MLP surrogate");
        }
        p.layers.push_back(std::move(w));
    }
}

// kv: {policy: "window"|"kvzap"|"random"|"scores", tau, keep (random), seed (random), scores (scores), window, sinks,
// blockSize, budgetBytes, decodeEviction, reference,
//      captureHidden, oracle, typeK, typeV, surrogate}
static std::shared_ptr<kvzap_params> read_kvzap(const OptionReader & r) {
    auto p    = std::make_shared<kvzap_params>();
    p->policy = (kvzap_policy)r.choice("policy",
                                       { { "kvzap", KVZAP_POLICY_KVZAP },
                                         { "window", KVZAP_POLICY_WINDOW },
                                         { "random", KVZAP_POLICY_RANDOM },
                                         { "scores", KVZAP_POLICY_SCORES } },
                                       KVZAP_POLICY_KVZAP);
    p->tau    = (float)r.number("tau", -3.4e38, 3.4e38, p->tau);
    if (p->policy == KVZAP_POLICY_RANDOM) {
        p->keep = (float)r.number("keep", 0.0, 1.0, 1.0);
        p->seed = (uint64_t)r.integer("seed", 0, (int64_t)1 << 53, 0);
        p->tau  = 1.0f - p->keep;
    }
    if (p->policy == KVZAP_POLICY_SCORES) {
        const Napi::Value sv = r.get("scores");
        if (!sv.IsArray())
            throw Napi::TypeError::New(r.env, r.name("scores") + " must be an array of Float32Array, one per layer");
        Napi::Array sa = sv.As<Napi::Array>();
        for (uint32_t i = 0; i < sa.Length(); i++) {
            p->external_scores.push_back(read_f32_array(sa.Get(i), r.name("scores") + "[" + std::to_string(i) + "]"));
        }
    }
    p->window     = (int32_t)r.integer("window", 0, MAX_CONTEXT, p->window);
    p->n_sink     = (int32_t)r.integer("sinks", 0, MAX_CONTEXT, p->policy == KVZAP_POLICY_WINDOW ? 4 : 0);
    p->block_size = (int32_t)r.integer("blockSize", 1, 4096, p->block_size);
    // exact in a double: 2^53
    p->budget_bytes    = r.integer("budgetBytes", 0, (int64_t)1 << 53, 0);
    p->decode_eviction = r.boolean("decodeEviction", true);
    p->reference       = r.boolean("reference", false);
    p->capture_hidden  = r.boolean("captureHidden", false);
    p->oracle          = r.boolean("oracle", false);
    p->type_k          = r.kv_type("typeK", GGML_TYPE_F16);
    p->type_v          = r.kv_type("typeV", GGML_TYPE_F16);
    if (r.has("surrogate")) read_surrogate(r.object("surrogate"), *p);
    if ((p->policy == KVZAP_POLICY_RANDOM || p->policy == KVZAP_POLICY_SCORES) && (p->reference || p->oracle)) {
        throw Napi::TypeError::New(
            r.env, "the random and scores policies run on the block memory only (no reference or oracle mode)");
    }
    return p;
}

llama_context_params read_context_params(const Napi::Value & options, std::shared_ptr<kvzap_params> & kz) {
    const OptionReader r(options, "options");
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx                = (uint32_t)r.integer("contextSize", 0, MAX_CONTEXT, 0);
    cp.n_batch              = (uint32_t)r.integer("batchSize", 1, MAX_CONTEXT, cp.n_batch);
    cp.n_ubatch             = (uint32_t)r.integer("ubatchSize", 1, cp.n_batch, std::min(cp.n_ubatch, cp.n_batch));
    cp.n_threads            = (int32_t)r.integer("threads", 1, 4096, cp.n_threads);
    cp.n_threads_batch      = (int32_t)r.integer("threadsBatch", 1, 4096, cp.n_threads);
    if (r.has("flashAttention")) {
        cp.flash_attn_type =
            r.boolean("flashAttention", false) ? LLAMA_FLASH_ATTN_TYPE_ENABLED : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    }
    cp.type_k = r.kv_type("typeK", cp.type_k);
    cp.type_v = r.kv_type("typeV", cp.type_v);
    if (r.has("kv")) {
        kz = read_kvzap(r.object("kv"));
        // KVzap's pool holds the KV types the kv options name
        cp.type_k = kz->type_k;
        cp.type_v = kz->type_v;
    }
    cp.n_seq_max = 1;
    cp.no_perf   = false;
    return cp;
}

} // namespace kvzap
