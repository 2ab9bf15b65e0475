// The eviction policy: which pair stays when it leaves the window, and which go first when a budget is reached.
// It sees positions, heads and scores only; lists, blocks and the pool are the memory's business.
#pragma once

#include <cstdint>
#include <vector>

#include "kvzap.h"

// Whether the pair of layer il, KV head h, position p (surrogate score s) stays once it leaves the window. Protected
// pairs (prompt-only eviction) never reach this: the memory keeps them before asking.
bool kvzap_policy_keep(const kvzap_params & P, int32_t il, int32_t h, int32_t p, float s);

// A pair the budget may drop: outside the window and not protected.
struct kvzap_budget_cand {
    float s;
    int32_t head; // il * n_head_kv + h
    int32_t p;
};

// Sorts `cands` lowest score first and returns how many of them to drop, the fewest whose removal leaves at least
// `target` blocks free (lens: entries per head now, block_size rows per block, free_now: free blocks now). *freed
// gets the free blocks reached, which is below target when even dropping every candidate is not enough.
size_t kvzap_budget_choose(std::vector<kvzap_budget_cand> & cands, std::vector<int32_t> lens, int32_t block_size,
                           int64_t free_now, int64_t target, int64_t * freed);
