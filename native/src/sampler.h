// Token sampling: the settings a generation takes and the llama.cpp sampler chain built from them.
#pragma once

#include <cstdint>

#include "llama-cpp.h"
#include "options.h"

namespace kvzap {

struct SamplerParams {
    float temperature     = 0.8f;
    int32_t top_k         = 40;
    float top_p           = 0.95f;
    float min_p           = 0.05f;
    uint32_t seed         = LLAMA_DEFAULT_SEED;
    float repeat_penalty  = 1.0f;
    int32_t repeat_last_n = 64;
};

// {temperature, topK, topP, minP, seed, repeatPenalty, repeatLastN} of a generate() options object.
SamplerParams read_sampler_params(const OptionReader & r);

// The chain for p: penalties, then greedy (temperature 0) or top-k, top-p, min-p, temperature and a seeded draw.
llama_sampler_ptr make_sampler(const SamplerParams & p, const llama_vocab * vocab);

} // namespace kvzap
