// The stock engine (KVZAP_STOCK=ON): the addon built against the unpatched llama.cpp of the same tag, so that
// `kvzap bench` compares KVzap with upstream's own cache and attention through one harness. llama.cpp has no KVzap
// memory here: asking for one is an error, and every inspection reports "not a KVzap memory".
#include <stdexcept>

#include "kvzap.h"

void kvzap_set_next_params(std::shared_ptr<const kvzap_params> params) {
    if (params) {
        throw std::runtime_error(
            "this addon is a stock llama.cpp build (KVZAP_STOCK): it has only the full cache; use the kvzap addon for "
            "KVzap, window or random policies");
    }
}

int64_t kvzap_default_budget() {
    return 0;
}

kvzap_stats kvzap_get_stats(const llama_memory_i *) {
    return {};
}

bool kvzap_get_scores(const llama_memory_i *, int32_t, int32_t, int32_t, float *) {
    return false;
}

bool kvzap_get_hidden(const llama_memory_i *, int32_t, int32_t, int32_t, float *) {
    return false;
}

void kvzap_settle(llama_memory_i *) {}

void kvzap_set_evicting(llama_memory_i *, bool) {}

bool kvzap_oracle_scores(const llama_memory_i *, int32_t, int32_t, int32_t, int32_t, float *, int, kvzap_device,
                         kvzap_device *, std::string * err) {
    if (err) *err = "a stock llama.cpp build has no oracle memory";
    return false;
}

bool kvzap_oracle_rows(const llama_memory_i *, int32_t, int32_t, int32_t, std::vector<float> &, std::vector<float> &,
                       std::vector<float> &) {
    return false;
}

std::string kvzap_last_error(const llama_memory_i *) {
    return {};
}
