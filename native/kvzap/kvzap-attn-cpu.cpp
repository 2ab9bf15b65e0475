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
#include "vec.h"

static void rows_to_f32(const ggml_tensor * t, int64_t first_slot, int64_t n, float * out) {
    const int64_t d = t->ne[0];
    const char * src = (const char *) t->data + first_slot * t->nb[1];
    for (int64_t r = 0; r < n; r++) {
        const char * row = src + r * t->nb[1];
        switch (t->type) {
            case GGML_TYPE_F32: memcpy(out + r * d, row, d * sizeof(float)); break;
            case GGML_TYPE_F16: ggml_cpu_fp16_to_fp32((const ggml_fp16_t *) row, out + r * d, d); break;
            case GGML_TYPE_BF16: ggml_cpu_bf16_to_fp32((const ggml_bf16_t *) row, out + r * d, d); break;
            default: GGML_ABORT("kvzap_attn: unsupported KV type %s", ggml_type_name(t->type));
        }
    }
}

// Gathers list entries [first, first + n) of one head into dense f32 rows (entries of a block are adjacent slots).
static void gather_rows(const ggml_tensor * pool, const int32_t * blocks, int32_t B, int64_t first, int64_t n, float * out) {
    const int64_t d = pool->ne[0];
    for (int64_t i = 0; i < n;) {
        const int64_t idx = first + i;
        const int64_t in_block = std::min<int64_t>(B - idx % B, n - i);
        rows_to_f32(pool, (int64_t) blocks[idx / B] * B + idx % B, in_block, out + i * d);
        i += in_block;
    }
}

extern "C" void ggml_compute_forward_kvzap_attn(const struct ggml_compute_params * params, struct ggml_tensor * dst) {
    const ggml_tensor * q = dst->src[0];
    const ggml_tensor * kp = dst->src[1];
    const ggml_tensor * vp = dst->src[2];
    const ggml_tensor * bt = dst->src[3];
    const ggml_tensor * no = dst->src[4];
    const ggml_tensor * ps = dst->src[5];
    float scale;
    memcpy(&scale, dst->op_params, sizeof(float));
    const int32_t B = ((const int32_t *) dst->op_params)[1];

    const int64_t dk = q->ne[0], Hq = q->ne[1], T = q->ne[2];
    const int64_t H = bt->ne[1], dv = vp->ne[0];
    const int64_t G = Hq / H;
    const int32_t * pos = (const int32_t *) ps->data;

    // A task is a tile of TQ query tokens of one KV head: its TQ * G query rows share every K and V row read, which
    // is converted to f32 once per tile. Keys go in chunks of CH.
    const int64_t TQ = T >= 16 ? 16 : T;
    const int64_t CH = 256;
    const int64_t R = TQ * G;
    thread_local std::vector<float> kbuf, kt, vbuf, sc, acc, M, S;
    thread_local std::vector<int64_t> lim;
    kbuf.resize((size_t) CH * dk);
    kt.resize((size_t) CH * dk);
    vbuf.resize((size_t) CH * dv);
    sc.resize((size_t) R * CH);
    acc.resize((size_t) R * dv);
    M.resize(R);
    S.resize(R);
    lim.resize(TQ);

    const int64_t n_tiles = (T + TQ - 1) / TQ;
    for (int64_t task = params->ith; task < n_tiles * H; task += params->nth) {
        const int64_t t0 = (task / H) * TQ;
        const int64_t g = task % H;
        const int64_t nt = std::min<int64_t>(TQ, T - t0);
        const int64_t nr = nt * G;
        const int32_t * blocks = (const int32_t *) ((const char *) bt->data + g * bt->nb[1]);
        const int64_t n_old = *(const int32_t *) ((const char *) no->data + g * no->nb[0]);
        // entries visible to token t: every older pair, and the ubatch's pairs up to its position
        int64_t tile_lim = 0;
        for (int64_t i = 0; i < nt; i++) {
            int64_t n_new = 0;
            for (int64_t j = 0; j < T; j++) n_new += pos[j] <= pos[t0 + i];
            lim[i] = n_old + n_new;
            tile_lim = std::max(tile_lim, lim[i]);
        }
        std::fill(acc.begin(), acc.begin() + nr * dv, 0.0f);
        std::fill(M.begin(), M.begin() + nr, -INFINITY);
        std::fill(S.begin(), S.begin() + nr, 0.0f);
        for (int64_t c0 = 0; c0 < tile_lim; c0 += CH) {
            const int64_t n = std::min<int64_t>(CH, tile_lim - c0);
            gather_rows(kp, blocks, B, c0, n, kbuf.data());
            gather_rows(vp, blocks, B, c0, n, vbuf.data());
            // With many query rows, K is transposed to [dk][n] once: a row's scores are then dk axpy's over contiguous
            // keys. With few rows (decoding) the transpose costs more than it saves: dot products instead.
            const bool transposed = nr >= 8;
            float * ktp = kt.data();
            if (transposed) {
                for (int64_t e = 0; e < n; e++) {
                    for (int64_t d = 0; d < dk; d++) ktp[d * n + e] = kbuf[e * dk + d];
                }
            }
            for (int64_t r = 0; r < nr; r++) {
                const int64_t i = r / G, gi = r % G;
                const float * qh = (const float *) ((const char *) q->data + (g * G + gi) * q->nb[1] + (t0 + i) * q->nb[2]);
                float * s = sc.data() + r * CH;
                const int64_t n_vis = std::max<int64_t>(0, std::min<int64_t>(n, lim[i] - c0));
                if (transposed) {
                    for (int64_t e = 0; e < n_vis; e++) s[e] = 0.0f;
                    for (int64_t d = 0; d < dk; d++) {
                        const float qd = qh[d];
                        const float * kd = ktp + d * n;
                        for (int64_t e = 0; e < n_vis; e++) s[e] += qd * kd[e];
                    }
                } else {
                    for (int64_t e = 0; e < n_vis; e++) ggml_vec_dot_f32((int) dk, s + e, 0, kbuf.data() + e * dk, 0, qh, 0, 1);
                }
                float cmax = -INFINITY;
                for (int64_t e = 0; e < n_vis; e++) {
                    s[e] *= scale;
                    cmax = std::max(cmax, s[e]);
                }
                for (int64_t e = n_vis; e < n; e++) s[e] = 0.0f;  // weight 0: not visible to this query
                if (n_vis == 0) continue;
                const float mnew = std::max(M[r], cmax);
                const float corr = M[r] == -INFINITY ? 0.0f : expf(M[r] - mnew);
                if (corr != 1.0f) ggml_vec_scale_f32((int) dv, acc.data() + r * dv, corr);
                S[r] = S[r] * corr + (float) ggml_vec_soft_max_f32((int) n_vis, s, s, mnew);
                M[r] = mnew;
            }
            for (int64_t r = 0; r < nr; r++) {
                float * a = acc.data() + r * dv;
                const float * w = sc.data() + r * CH;
                for (int64_t e = 0; e < n; e++) {
                    const float we = w[e];
                    if (we == 0.0f) continue;
                    const float * v = vbuf.data() + e * dv;
                    for (int64_t k = 0; k < dv; k++) a[k] += we * v[k];
                }
            }
        }
        for (int64_t r = 0; r < nr; r++) {
            const int64_t i = r / G, gi = r % G;
            float * out = (float *) ((char *) dst->data + (g * G + gi) * dst->nb[1] + (t0 + i) * dst->nb[2]);
            const float inv = S[r] > 0.0f ? 1.0f / S[r] : 0.0f;
            for (int64_t k = 0; k < dv; k++) out[k] = acc[r * dv + k] * inv;
        }
    }
}
