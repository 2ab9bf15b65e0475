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

    thread_local std::vector<float> kbuf, vbuf, sc, acc, M, S;
    kbuf.resize((size_t) B * dk);
    vbuf.resize((size_t) B * dv);
    sc.resize((size_t) G * B);
    acc.resize((size_t) G * dv);
    M.resize(G);
    S.resize(G);

    for (int64_t task = params->ith; task < T * H; task += params->nth) {
        const int64_t t = task / H;
        const int64_t g = task % H;
        const int32_t * blocks = (const int32_t *) ((const char *) bt->data + g * bt->nb[1]);
        const int64_t n_old = *(const int32_t *) ((const char *) no->data + g * no->nb[0]);
        const int64_t n_total = n_old + T;
        const int32_t qpos = pos[t];
        std::fill(acc.begin(), acc.end(), 0.0f);
        std::fill(M.begin(), M.end(), -INFINITY);
        std::fill(S.begin(), S.end(), 0.0f);
        for (int64_t b0 = 0; b0 < n_total; b0 += B) {
            const int64_t cnt = std::min<int64_t>(B, n_total - b0);
            // pairs of this ubatch that come after the query are not visible (causal)
            int64_t vis = cnt;
            while (vis > 0 && b0 + vis - 1 >= n_old && pos[b0 + vis - 1 - n_old] > qpos) vis--;
            if (vis == 0) break;
            const int64_t base = (int64_t) blocks[b0 / B] * B;
            rows_to_f32(kp, base, vis, kbuf.data());
            rows_to_f32(vp, base, vis, vbuf.data());
            for (int64_t gi = 0; gi < G; gi++) {
                const float * qh = (const float *) ((const char *) q->data + (g * G + gi) * q->nb[1] + t * q->nb[2]);
                float * s = sc.data() + gi * B;
                float bmax = -INFINITY;
                for (int64_t e = 0; e < vis; e++) {
                    float d;
                    ggml_vec_dot_f32((int) dk, &d, 0, kbuf.data() + e * dk, 0, qh, 0, 1);
                    s[e] = d * scale;
                    bmax = std::max(bmax, s[e]);
                }
                const float mnew = std::max(M[gi], bmax);
                const float corr = M[gi] == -INFINITY ? 0.0f : expf(M[gi] - mnew);
                float * a = acc.data() + gi * dv;
                if (corr != 1.0f) ggml_vec_scale_f32((int) dv, a, corr);
                float sum = S[gi] * corr;
                for (int64_t e = 0; e < vis; e++) {
                    const float w = expf(s[e] - mnew);
                    sum += w;
                    ggml_vec_mad_f32((int) dv, a, vbuf.data() + e * dv, w);
                }
                S[gi] = sum;
                M[gi] = mnew;
            }
            if (vis < cnt) break;
        }
        for (int64_t gi = 0; gi < G; gi++) {
            float * out = (float *) ((char *) dst->data + (g * G + gi) * dst->nb[1] + t * dst->nb[2]);
            const float inv = S[gi] > 0.0f ? 1.0f / S[gi] : 0.0f;
            for (int64_t i = 0; i < dv; i++) out[i] = acc[gi * dv + i] * inv;
        }
    }
}
