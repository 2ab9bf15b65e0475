#include "kvzap-compute.h"

#include <algorithm>
#include <cmath>
#include <vector>

void kvzap_oracle_gram(const float * wo, int64_t n_out, int32_t n_head, int32_t dv, double * M, int n_threads) {
    std::fill(M, M + (size_t)n_head * dv * dv, 0.0);
    auto work = [&](int ith) {
        for (int32_t g = ith; g < n_head; g += n_threads) {
            double * Mg = M + (size_t)g * dv * dv;
            for (int64_t r = 0; r < n_out; r++) {
                const float * w = wo + r * (int64_t)n_head * dv + (size_t)g * dv;
                for (int32_t a = 0; a < dv; a++) {
                    const double wa = w[a];
                    for (int32_t b = 0; b < dv; b++) Mg[a * dv + b] += wa * w[b];
                }
            }
        }
    };
    n_threads = std::max(1, std::min(n_threads, (int)n_head));
    kvzap_run_threads(n_threads, work);
}

void kvzap_oracle_layer_cpu(const kvzap_oracle_layer & L, float * out, int n_threads) {
    const int32_t Hq = L.n_head, Hkv = L.n_head_kv, G = Hq / Hkv, dk = L.dk, dv = L.dv;
    const int32_t nc = L.c1 - L.c0, nq = L.q1 - L.q0;
    std::fill(out, out + (size_t)nc * Hkv, 0.0f);
    if (nc == 0 || nq == 0) return;
    n_threads = std::max(1, std::min(n_threads, nq));

    // ||W_O^(g) v_i|| from the Gram matrices; threads take context positions
    std::vector<float> vnorm((size_t)Hq * nc);
    auto norms = [&](int ith) {
        for (int32_t i = ith; i < nc; i += n_threads) {
            for (int32_t g = 0; g < Hq; g++) {
                const double * M = L.M + (size_t)g * dv * dv;
                const float * v  = L.V + ((size_t)(g / G) * nc + i) * dv;
                double acc       = 0;
                for (int32_t a = 0; a < dv; a++) {
                    double t = 0;
                    for (int32_t b = 0; b < dv; b++) t += M[a * dv + b] * v[b];
                    acc += v[a] * t;
                }
                vnorm[(size_t)g * nc + i] = (float)std::sqrt(std::max(0.0, acc));
            }
        }
    };
    kvzap_run_threads(n_threads, norms);

    // keys transposed, [h][e][p], so that a query's logits over all keys accumulate in contiguous, vectorisable strides
    std::vector<float> KT((size_t)Hkv * dk * L.q1);
    for (int32_t h = 0; h < Hkv; h++) {
        const float * Kh = L.K + (size_t)h * L.q1 * dk;
        float * T        = KT.data() + (size_t)h * dk * L.q1;
        for (int32_t p = 0; p < L.q1; p++) {
            for (int32_t e = 0; e < dk; e++) T[(size_t)e * L.q1 + p] = Kh[(size_t)p * dk + e];
        }
    }
    // thread t takes the queries jj = t, t + T, ... of every head; per (query j, head g): logits over keys 0..j, the
    // softmax's normaliser, then the scores of the context keys
    std::vector<std::vector<float>> part((size_t)n_threads, std::vector<float>((size_t)nc * Hkv, 0.0f));
    auto work = [&](int ith) {
        std::vector<float> logit((size_t)L.q1);
        std::vector<float> & best = part[ith];
        for (int32_t g = 0; g < Hq; g++) {
            const int32_t h  = g / G;
            const float * Th = KT.data() + (size_t)h * dk * L.q1;
            for (int32_t jj = ith; jj < nq; jj += n_threads) {
                const int32_t j = L.q0 + jj;
                const int32_t n = j + 1;
                const float * q = L.Q + (size_t)jj * Hq * dk + (size_t)g * dk;
                float * lg      = logit.data();
                std::fill(lg, lg + n, 0.0f);
                for (int32_t e = 0; e < dk; e++) {
                    const float qe  = q[e];
                    const float * t = Th + (size_t)e * L.q1;
                    for (int32_t p = 0; p < n; p++) lg[p] += qe * t[p];
                }
                float m = -INFINITY;
                for (int32_t p = 0; p < n; p++) {
                    lg[p] *= L.kq_scale;
                    m = std::max(m, lg[p]);
                }
                double sum = 0;
                for (int32_t p = 0; p < n; p++) sum += std::exp(lg[p] - m);
                const double inv   = 1.0 / (sum * std::max(1e-30f, L.xnorm[jj]));
                const int32_t last = std::min(L.c1 - 1, j);
                for (int32_t i = L.c0; i <= last; i++) {
                    const float sc = (float)(std::exp(lg[i] - m) * inv * vnorm[(size_t)g * nc + (i - L.c0)]);
                    float & b      = best[(size_t)(i - L.c0) * Hkv + h];
                    if (sc > b) b = sc;
                }
            }
        }
    };
    kvzap_run_threads(n_threads, work);
    for (const auto & pt : part) {
        for (size_t k = 0; k < pt.size(); k++) out[k] = std::max(out[k], pt[k]);
    }
}
