// What a new Context is created with (see context-params.h).
#include "context-params.h"

#include <algorithm>
#include <string>
#include <vector>

namespace kvzap {

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
    else throw Napi::TypeError::New(env, "kv.policy must be window or kvzap");
    p->tau = (float) num("tau", p->tau);
    p->window = (int32_t) num("window", p->window);
    p->n_sink = (int32_t) num("sinks", p->policy == KVZAP_POLICY_WINDOW ? 4 : 0);
    p->block_size = (int32_t) num("blockSize", p->block_size);
    p->budget_bytes = (int64_t) num("budgetBytes", 0);
    p->decode_eviction = flag("decodeEviction", true);
    p->reference = flag("reference", false);
    p->capture_hidden = flag("captureHidden", false);
    p->oracle = flag("oracle", false);
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

llama_context_params read_context_params(Napi::Env env, const Napi::Value & options, std::shared_ptr<kvzap_params> & kz) {
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 0;
    if (options.IsObject()) {
        Napi::Object o = options.As<Napi::Object>();
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
        if (o.Has("kv") && o.Get("kv").IsObject()) kz = parse_kvzap(env, o.Get("kv").As<Napi::Object>(), cp);
    }
    cp.n_seq_max = 1;
    cp.no_perf = false;
    return cp;
}

}  // namespace kvzap
