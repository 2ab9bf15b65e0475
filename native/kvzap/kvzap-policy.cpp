#include "kvzap-policy.h"

#include <algorithm>

bool kvzap_policy_keep(const kvzap_params & P, int32_t /*il*/, int32_t /*h*/, int32_t p, float s) {
    switch (P.policy) {
        case KVZAP_POLICY_WINDOW:
            return p < P.n_sink;
        case KVZAP_POLICY_KVZAP:
        case KVZAP_POLICY_RANDOM:
        case KVZAP_POLICY_SCORES:
            return s >= P.tau;
    }
    return true;
}

size_t kvzap_budget_choose(std::vector<kvzap_budget_cand> & cands, std::vector<int32_t> lens, int32_t block_size,
                           int64_t free_now, int64_t target, int64_t * freed) {
    std::sort(cands.begin(), cands.end(),
              [](const kvzap_budget_cand & a, const kvzap_budget_cand & b) { return a.s < b.s; });
    int64_t f = free_now;
    size_t n  = 0;
    for (; n < cands.size() && f < target; n++) {
        int32_t & l = lens[cands[n].head];
        l--;
        if (l % block_size == 0) f++;
    }
    *freed = f;
    return n;
}
