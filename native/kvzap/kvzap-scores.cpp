// Scores of the evaluation policies that do not run a surrogate: seeded random eviction and externally given scores.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kvzap.h"

static constexpr int32_t KVZAP_RANDOM_GROUP = 64;

// splitmix64 finaliser: a well-mixed 64-bit hash of the seed and the pair's coordinates.
static uint64_t kvzap_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// The hash of a head's coordinates, which every pair of the head starts from.
static uint64_t kvzap_head_hash(uint64_t seed, int32_t il, int32_t h) {
    uint64_t x = kvzap_mix(seed);
    x          = kvzap_mix(x ^ (uint64_t)(uint32_t)il);
    return kvzap_mix(x ^ ((uint64_t)(uint32_t)h << 20));
}

static uint64_t kvzap_pair_hash(uint64_t head, int32_t p) {
    return kvzap_mix(head ^ ((uint64_t)(uint32_t)p << 8));
}

void kvzap_policy_group_scores(const kvzap_params & P, int32_t il, int32_t h, int32_t g0, float * out) {
    // the ranks of the group's 64 hashes at once: sorted by (hash, position), as kvzap_policy_score counts them
    struct keyed {
        uint64_t v;
        int32_t i;
    };
    keyed k[KVZAP_RANDOM_GROUP];
    const uint64_t head = kvzap_head_hash(P.seed, il, h);
    for (int32_t i = 0; i < KVZAP_RANDOM_GROUP; i++) k[i] = { kvzap_pair_hash(head, g0 + i), i };
    std::sort(k, k + KVZAP_RANDOM_GROUP,
              [](const keyed & a, const keyed & b) { return a.v < b.v || (a.v == b.v && a.i < b.i); });
    for (int32_t rank = 0; rank < KVZAP_RANDOM_GROUP; rank++)
        out[k[rank].i] = 1.0f - ((float)rank + 0.5f) / (float)KVZAP_RANDOM_GROUP;
}

float kvzap_policy_score(const kvzap_params & P, int32_t il, int32_t h, int32_t p, int32_t n_head_kv) {
    if (P.policy == KVZAP_POLICY_SCORES) {
        if (il < 0 || il >= (int32_t)P.external_scores.size()) return std::numeric_limits<float>::infinity();
        const auto & s = P.external_scores[il];
        const size_t i = (size_t)p * n_head_kv + h;
        return i < s.size() ? s[i] : std::numeric_limits<float>::infinity();
    }
    if (P.policy != KVZAP_POLICY_RANDOM) return -std::numeric_limits<float>::infinity();
    const int32_t g0    = p - p % KVZAP_RANDOM_GROUP;
    const uint64_t head = kvzap_head_hash(P.seed, il, h);
    const uint64_t u    = kvzap_pair_hash(head, p);
    int32_t rank        = 0;
    for (int32_t q = g0; q < g0 + KVZAP_RANDOM_GROUP; q++) {
        const uint64_t v = kvzap_pair_hash(head, q);
        if (v < u || (v == u && q < p)) rank++;
    }
    return 1.0f - ((float)rank + 0.5f) / (float)KVZAP_RANDOM_GROUP;
}

const char * kvzap_policy_name(kvzap_policy policy) {
    switch (policy) {
        case KVZAP_POLICY_WINDOW:
            return "window";
        case KVZAP_POLICY_RANDOM:
            return "random";
        case KVZAP_POLICY_SCORES:
            return "scores";
        default:
            return "kvzap";
    }
}
