// CPU kernel of GGML_OP_KVZAP_ATTN: attention of each query over its KV head's own list of pairs.
//
// src[0] q            F32 [dk, n_head, n_tokens]
// src[1] k_pool       F32/F16 [dk, slots]      (a slot is one pair's K row)
// src[2] v_pool       F32/F16 [dv, slots]
// src[3] block_table  I32 [nb_max, n_head_kv]  (list index i of head g lives in slot block_table[g][i / B] * B + i % B)
// src[4] n_old        I32 [n_head_kv]          (pairs held before this ubatch; all visible to every query)
// src[5] pos          I32 [n_tokens]           (the ubatch's positions; its own pairs follow n_old, causally visible)
// dst               F32 [dv, n_head, n_tokens]
// op params: scale (f32), B (i32)
//
// Every (token, KV head) is one task: its G query heads share each K and V row that is read (GQA), with an online
// softmax over blocks of B pairs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ggml-cpu-impl.h"
#include "ggml-cpu.h"
#include "simd-gemm.h"
#include "vec.h"

// C[M x N] += A[M x K] * B[K x N], row-major: ggml-cpu's register-blocked SIMD GEMM where it exists.
static void gemm_acc(float * C, const float * A, const float * B, int M, int K, int N) {
#if defined(GGML_SIMD) && !defined(__ARM_FEATURE_SVE) && !defined(__riscv_v_intrinsic)
    simd_gemm(C, A, B, M, K, N);
#else
    for (int i = 0; i < M; i++) {
        for (int k = 0; k < K; k++) {
            const float a = A[i * K + k];
            for (int j = 0; j < N; j++) C[i * N + j] += a * B[k * N + j];
        }
    }
#endif
}

static void rows_to_f32(const ggml_tensor * t, int64_t first_slot, int64_t n, float * out) {
    const int64_t d  = t->ne[0];
    const char * src = (const char *)t->data + first_slot * t->nb[1];
    for (int64_t r = 0; r < n; r++) {
        const char * row = src + r * t->nb[1];
        switch (t->type) {
            case GGML_TYPE_F32:
                memcpy(out + r * d, row, d * sizeof(float));
                break;
            case GGML_TYPE_F16:
                ggml_cpu_fp16_to_fp32((const ggml_fp16_t *)row, out + r * d, d);
                break;
            case GGML_TYPE_BF16:
                ggml_cpu_bf16_to_fp32((const ggml_bf16_t *)row, out + r * d, d);
                break;
            case GGML_TYPE_Q8_0:
                ggml_get_type_traits(GGML_TYPE_Q8_0)->to_float(row, out + r * d, d);
                break;
            default:
                GGML_ABORT("kvzap_attn: unsupported KV type %s", ggml_type_name(t->type));
        }
    }
}

// Gathers list entries [first, first + n) of one head into dense f32 rows (entries of a block are adjacent slots).
static void gather_rows(const ggml_tensor * pool, const int32_t * blocks, int32_t B, int64_t first, int64_t n,
                        float * out) {
    const int64_t d = pool->ne[0];
    for (int64_t i = 0; i < n;) {
        const int64_t idx      = first + i;
        const int64_t in_block = std::min<int64_t>(B - idx % B, n - i);
        rows_to_f32(pool, (int64_t)blocks[idx / B] * B + idx % B, in_block, out + i * d);
        i += in_block;
    }
}

extern "C" void ggml_compute_forward_kvzap_attn(const struct ggml_compute_params * params, struct ggml_tensor * dst) {
    const ggml_tensor * q  = dst->src[0];
    const ggml_tensor * kp = dst->src[1];
    const ggml_tensor * vp = dst->src[2];
    const ggml_tensor * bt = dst->src[3];
    const ggml_tensor * no = dst->src[4];
    const ggml_tensor * ps = dst->src[5];
    float scale;
    memcpy(&scale, dst->op_params, sizeof(float));
    const int32_t B = ((const int32_t *)dst->op_params)[1];

    const int64_t dk = q->ne[0], Hq = q->ne[1], T = q->ne[2];
    const int64_t H = bt->ne[1], dv = vp->ne[0];
    const int64_t G     = Hq / H;
    const int32_t * pos = (const int32_t *)ps->data;

    // A task is a tile of TQ query tokens of one KV head: its TQ * G query rows share every K and V row read, which
    // is converted to f32 once per tile. Keys go in chunks of CH. With many rows (prefill) the scores and the
    // weighted sum of values are two small GEMMs (S^T = K Q^T, O += P V); with few (decoding), dot products.
    const int64_t TQ = T >= 32 ? 32 : T;
    const int64_t CH = 256;
    const int64_t R  = TQ * G;
    thread_local std::vector<float> kbuf, vbuf, st, pm, qt, acc, M, S, mnew;
    thread_local std::vector<int64_t> lim;
    kbuf.resize((size_t)CH * dk);
    vbuf.resize((size_t)CH * dv);
    st.resize((size_t)CH * R);
    pm.resize((size_t)R * CH);
    qt.resize((size_t)dk * R);
    acc.resize((size_t)R * dv);
    M.resize(R);
    S.resize(R);
    mnew.resize(R);
    lim.resize(TQ);

    const int64_t n_tiles = (T + TQ - 1) / TQ;
    for (int64_t task = params->ith; task < n_tiles * H; task += params->nth) {
        const int64_t t0       = (task / H) * TQ;
        const int64_t g        = task % H;
        const int64_t nt       = std::min<int64_t>(TQ, T - t0);
        const int64_t nr       = nt * G;
        const bool gemm        = nr >= 8;
        const int32_t * blocks = (const int32_t *)((const char *)bt->data + g * bt->nb[1]);
        const int64_t n_old    = *(const int32_t *)((const char *)no->data + g * no->nb[0]);
        // entries visible to token t: every older pair, and the ubatch's pairs up to its position
        int64_t tile_lim = 0;
        for (int64_t i = 0; i < nt; i++) {
            int64_t n_new = 0;
            for (int64_t j = 0; j < T; j++) n_new += pos[j] <= pos[t0 + i];
            lim[i]   = n_old + n_new;
            tile_lim = std::max(tile_lim, lim[i]);
        }
        auto qrow = [&](int64_t r) {
            return (const float *)((const char *)q->data + (g * G + r % G) * q->nb[1] + (t0 + r / G) * q->nb[2]);
        };
        if (gemm) {
            for (int64_t r = 0; r < nr; r++) {
                const float * qr = qrow(r);
                for (int64_t d = 0; d < dk; d++) qt[d * nr + r] = qr[d];
            }
        }
        std::fill(acc.begin(), acc.begin() + nr * dv, 0.0f);
        std::fill(M.begin(), M.begin() + nr, -INFINITY);
        std::fill(S.begin(), S.begin() + nr, 0.0f);
        for (int64_t c0 = 0; c0 < tile_lim; c0 += CH) {
            const int64_t n = std::min<int64_t>(CH, tile_lim - c0);
            gather_rows(kp, blocks, B, c0, n, kbuf.data());
            gather_rows(vp, blocks, B, c0, n, vbuf.data());
            if (gemm) {
                std::fill(st.begin(), st.begin() + n * nr, 0.0f);
                gemm_acc(st.data(), kbuf.data(), qt.data(), (int)n, (int)dk, (int)nr); // S^T [n x nr]
            }
            for (int64_t r = 0; r < nr; r++) {
                float * p           = pm.data() + r * n; // P rows packed at stride n: the A operand of O += P V
                const int64_t n_vis = std::max<int64_t>(0, std::min<int64_t>(n, lim[r / G] - c0));
                if (gemm) {
                    for (int64_t e = 0; e < n_vis; e++) p[e] = st[e * nr + r] * scale;
                } else {
                    const float * qr = qrow(r);
                    for (int64_t e = 0; e < n_vis; e++) {
                        ggml_vec_dot_f32((int)dk, p + e, 0, kbuf.data() + e * dk, 0, qr, 0, 1);
                        p[e] *= scale;
                    }
                }
                float cmax = -INFINITY;
                for (int64_t e = 0; e < n_vis; e++) cmax = std::max(cmax, p[e]);
                for (int64_t e = n_vis; e < n; e++) p[e] = 0.0f; // weight 0: not visible to this query
                if (n_vis == 0) {
                    mnew[r] = M[r];
                    continue;
                }
                const float m    = std::max(M[r], cmax);
                const float corr = M[r] == -INFINITY ? 0.0f : expf(M[r] - m);
                if (corr != 1.0f) ggml_vec_scale_f32((int)dv, acc.data() + r * dv, corr);
                S[r] = S[r] * corr + (float)ggml_vec_soft_max_f32((int)n_vis, p, p, m);
                M[r] = m;
            }
            if (gemm) {
                gemm_acc(acc.data(), pm.data(), vbuf.data(), (int)nr, (int)n, (int)dv); // O += P V
            } else {
                for (int64_t r = 0; r < nr; r++) {
                    const float * w = pm.data() + r * n;
                    float * a       = acc.data() + r * dv;
                    for (int64_t e = 0; e < n; e++) {
                        if (w[e] != 0.0f) ggml_vec_mad_f32((int)dv, a, vbuf.data() + e * dv, w[e]);
                    }
                }
            }
        }
        for (int64_t r = 0; r < nr; r++) {
            const int64_t i = r / G, gi = r % G;
            float * out     = (float *)((char *)dst->data + (g * G + gi) * dst->nb[1] + (t0 + i) * dst->nb[2]);
            const float inv = S[r] > 0.0f ? 1.0f / S[r] : 0.0f;
            for (int64_t k = 0; k < dv; k++) out[k] = acc[r * dv + k] * inv;
        }
    }
}
