// Token sampling (see sampler.h).
#include "sampler.h"

#include <climits>

namespace kvzap {

SamplerParams read_sampler_params(const OptionReader & r) {
    SamplerParams p;
    p.temperature = (float)r.number("temperature", 0.0, 1e4, p.temperature);
    p.top_k       = (int32_t)r.integer("topK", 0, INT32_MAX, p.top_k);
    p.top_p       = (float)r.number("topP", 0.0, 1.0, p.top_p);
    p.min_p       = (float)r.number("minP", 0.0, 1.0, p.min_p);
    p.seed        = (uint32_t)r.integer("seed", 0, UINT32_MAX, p.seed);
    // a penalty divides positive logits: 0 or less has no meaning
    p.repeat_penalty = (float)r.number("repeatPenalty", 1e-3, 1e3, p.repeat_penalty);
    p.repeat_last_n  = (int32_t)r.integer("repeatLastN", 0, INT32_MAX, p.repeat_last_n);
    return p;
}

llama_sampler_ptr make_sampler(const SamplerParams & p, const llama_vocab * vocab) {
    llama_sampler_chain_params cp = llama_sampler_chain_default_params();
    cp.no_perf                    = true;
    llama_sampler_ptr chain(llama_sampler_chain_init(cp));
    if (p.repeat_penalty != 1.0f) {
        llama_sampler_chain_add(chain.get(), llama_sampler_init_penalties(llama_vocab_n_tokens(vocab), p.repeat_last_n,
                                                                          p.repeat_penalty, 0.0f, 0.0f));
    }
    if (p.temperature <= 0.0f) {
        llama_sampler_chain_add(chain.get(), llama_sampler_init_greedy());
        return chain;
    }
    if (p.top_k > 0) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_k(p.top_k));
    if (p.top_p < 1.0f) llama_sampler_chain_add(chain.get(), llama_sampler_init_top_p(p.top_p, 1));
    if (p.min_p > 0.0f) llama_sampler_chain_add(chain.get(), llama_sampler_init_min_p(p.min_p, 1));
    llama_sampler_chain_add(chain.get(), llama_sampler_init_temp(p.temperature));
    llama_sampler_chain_add(chain.get(), llama_sampler_init_dist(p.seed));
    return chain;
}

} // namespace kvzap
