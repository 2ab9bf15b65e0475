// KVzap in the graph: the surrogate on each layer's attn_norm, the store of new pairs into their heads' blocks, and
// attention over every KV head's own list (GGML_OP_KVZAP_ATTN). In reference mode: dense per-position storage and
// stock ggml attention with an explicit per-head mask of the same visibility rule, for tests.
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "ggml-backend.h"
#include "kvzap-memory.h"
#include "kvzap-vmem.h"
#include "llama-impl.h"

class llm_graph_input_kvzap : public llm_graph_input_attn_kv {
public:
    llm_graph_input_kvzap(const llama_hparams & hparams, const llama_cparams & cparams,
                          const llama_kvzap_memory_context * z) :
        llm_graph_input_attn_kv(hparams, cparams, nullptr), z(z), mem(z->mem) {}

    void set_input(const llama_ubatch * ubatch) override;
    bool can_reuse(const llm_graph_params & params) override;

    const llama_kvzap_memory_context * z;
    const llama_kvzap_memory * mem; // the memory the graph was built for (outlives the contexts, unlike z)
    // views of the memory's persistent tensors (block_table, step_*), which set_input writes
    ggml_tensor * block_table = nullptr; // I32 [nb_max, n_head_kv * n_layer]
    ggml_tensor * n_old       = nullptr; // I32 [n_head_kv * n_layer]
    ggml_tensor * new_slots   = nullptr; // I64 [n_head_kv * n_tokens, n_layer]
    ggml_tensor * pos         = nullptr; // I32 [n_tokens]
    ggml_tensor * score_rows  = nullptr; // I64 [n_tokens]
    ggml_tensor * mask = nullptr; // reference: F32 [n_kv, n_tokens, n_head, n_layer]; oracle: [n_kv, n_tokens, 1, 1]
};

static void set_data(ggml_tensor * t, const void * src, size_t size) {
    if (t && t->buffer) ggml_backend_tensor_set(t, src, 0, size);
}

// The graph of the last ubatch serves the next one (llama.cpp skips building and allocating it) when nothing its
// topology depends on changed: the same memory, as many tokens, and the persistent block table read as wide as then
// (the longest list has as many blocks). Everything else a ubatch changes comes in through set_input.
bool llm_graph_input_kvzap::can_reuse(const llm_graph_params & params) {
    const auto * nz = static_cast<const llama_kvzap_memory_context *>(params.mctx);
    if (!nz || nz->mem != mem || !mem->block_table || !block_table || mask) return false;
    if (nz->plan.nb_max != (int32_t)block_table->ne[0] || nz->plan.n_tokens != (int32_t)pos->ne[0]) return false;
    z = nz;
    return true;
}

void llm_graph_input_kvzap::set_input(const llama_ubatch * /*ubatch*/) {
    kvzap_host_timer timer(&z->mem->host_ms);
    kvzap_host_timer phase(z->mem->phase(KVZAP_PHASE_INPUT));
    const kvzap_ubatch_plan & plan = z->plan;
    const llama_kvzap_memory & mz  = *z->mem;
    if (!plan.block_table.empty())
        set_data(block_table, plan.block_table.data(), plan.block_table.size() * sizeof(int32_t));
    const bool step = mz.step_slots != nullptr; // else ordinary inputs, which the scheduler copies
    struct input {
        ggml_tensor * t;
        const void * src;
        size_t bytes;
    };
    const input in[4] = {
        { step ? mz.step_slots : new_slots, plan.new_slots.data(), plan.new_slots.size() * sizeof(int64_t) },
        { step ? mz.step_pos : pos, plan.pos.data(), plan.pos.size() * sizeof(int32_t) },
        { step ? mz.step_rows : score_rows, plan.score_rows.data(), plan.score_rows.size() * sizeof(int64_t) },
        { step ? mz.step_n_old : n_old, plan.n_old.data(), plan.n_old.size() * sizeof(int32_t) },
    };
    const size_t n_in = in[3].t ? 4 : 3; // n_old: not for a reference or an oracle
    // in the pool's device memory: once the last ubatch's graph, which may still read them, is done, in one copy
    // (should that fail, one ggml_backend_tensor_set each, after waiting for the device)
    bool written = false;
    if (step && mz.pool_device >= 0 && !ggml_backend_buffer_is_host(mz.step_slots->buffer)) {
        kvzap_host_write w[4];
        for (size_t i = 0; i < n_in; i++) w[i] = { in[i].t->data, in[i].src, in[i].bytes };
        std::string err;
        written = kvzap_vmem_cuda_write(mz.pool_device, w, n_in, err);
        if (!written) {
            LLAMA_LOG_WARN("%s: %s\n", __func__, err.c_str());
            kvzap_vmem_cuda_sync(mz.pool_device);
        }
    }
    if (!written) {
        for (const input & x : in) set_data(x.t, x.src, x.bytes);
    }
    if (mask && mask->buffer) {
        // The rule: key p is visible to query q of this ubatch iff p <= q and (p is in the ubatch, or q0 - p <= window,
        // or the pair was kept when it left the window).
        const llama_kvzap_memory & m = *z->mem;
        const kvzap_params & P       = *m.params;
        const int64_t n_kv = mask->ne[0], T = mask->ne[1], Hq = mask->ne[2], L = mask->ne[3];
        const int64_t G = Hq / m.n_head_kv;
        std::vector<float> data((size_t)n_kv * T * Hq * L, -INFINITY);
        if (P.oracle) { // causal only
            for (int64_t t = 0; t < T && t < plan.n_tokens; t++) {
                std::fill_n(data.data() + t * n_kv, std::min<int64_t>(plan.pos[t] + 1, n_kv), 0.0f);
            }
            set_data(mask, data.data(), data.size() * sizeof(float));
            return;
        }
        std::vector<float> sc((size_t)std::max<int64_t>(plan.q0, 1) * m.n_head_kv);
        for (int64_t il = 0; il < L; il++) {
            if (plan.q0 > 0 && m.scores[il])
                ggml_backend_tensor_get(m.scores[il], sc.data(), 0, (size_t)plan.q0 * m.n_head_kv * sizeof(float));
            for (int64_t hq = 0; hq < Hq; hq++) {
                const int64_t g = hq / G;
                for (int64_t t = 0; t < T && t < plan.n_tokens; t++) {
                    const int32_t q = plan.pos[t];
                    float * row     = data.data() + ((il * Hq + hq) * T + t) * n_kv;
                    for (int64_t p = 0; p <= q && p < n_kv; p++) {
                        bool vis = p >= plan.q0 || plan.q0 - p <= P.window;
                        if (!vis) {
                            const float s = m.scores[il]
                                                ? m.biased((int32_t)il, (int32_t)g, sc[(size_t)p * m.n_head_kv + g])
                                                : -INFINITY;
                            vis = m.protected_at(p) || (P.policy == KVZAP_POLICY_WINDOW ? p < P.n_sink : s >= P.tau);
                        }
                        if (vis) row[p] = 0.0f;
                    }
                }
            }
        }
        set_data(mask, data.data(), data.size() * sizeof(float));
    }
}

void kvzap_graph_cb_hook(const llm_graph_context & g, ggml_tensor * cur, const char * name, int il) {
    if (il < 0 || strcmp(name, "attn_norm") != 0) return;
    const auto * z = dynamic_cast<const llama_kvzap_memory_context *>(g.mctx);
    if (!z) return;
    if ((int)z->attn_norm.size() <= il) z->attn_norm.resize(il + 1, nullptr);
    z->attn_norm[il] = cur;
}

llm_graph_input_attn_kv * kvzap_build_attn_inp_hook(const llm_graph_context & g) {
    const auto * z = dynamic_cast<const llama_kvzap_memory_context *>(g.mctx);
    if (!z) return nullptr;
    const llama_kvzap_memory & m = *z->mem;
    auto * zc                    = const_cast<llama_kvzap_memory_context *>(z);
    if (z->full) m.plan_worst_case(g.n_tokens, zc->plan);
    zc->attn_norm.assign(m.n_layer, nullptr);

    ggml_context * ctx0 = g.ctx0;
    auto inp            = std::make_unique<llm_graph_input_kvzap>(g.hparams, g.cparams, z);
    const int64_t T     = g.n_tokens;
    const int64_t HL    = (int64_t)m.n_head_kv * m.n_layer;
    if (m.params->oracle) {
        // nothing is ever dropped in an oracle memory: one causal mask serves every head of every layer
        inp->mask = ggml_new_tensor_4d(ctx0, GGML_TYPE_F32, z->plan.n_kv_ref, T, 1, 1);
        ggml_set_input(inp->mask);
    } else if (m.params->reference) {
        inp->mask = ggml_new_tensor_4d(ctx0, GGML_TYPE_F32, z->plan.n_kv_ref, T, g.hparams.n_head(0), m.n_layer);
        ggml_set_input(inp->mask);
    } else {
        if (m.block_table) {
            // the persistent table, as wide as the longest list now (its rows stay nb_cap apart)
            inp->block_table = ggml_view_2d(ctx0, m.block_table, z->plan.nb_max, HL, m.block_table->nb[1], 0);
        } else {
            inp->block_table = ggml_new_tensor_2d(ctx0, GGML_TYPE_I32, z->plan.nb_max, HL);
            ggml_set_input(inp->block_table);
        }
        inp->n_old =
            m.step_n_old ? ggml_view_1d(ctx0, m.step_n_old, HL, 0) : ggml_new_tensor_1d(ctx0, GGML_TYPE_I32, HL);
    }
    const int64_t HT = (int64_t)m.n_head_kv * T;
    if (m.step_slots) {
        if (T > m.step_tokens) {
            throw std::runtime_error("internal: a ubatch of " + std::to_string(T) + " tokens, over n_ubatch (" +
                                     std::to_string(m.step_tokens) + ")");
        }
        inp->new_slots  = ggml_view_2d(ctx0, m.step_slots, HT, m.n_layer, (size_t)HT * sizeof(int64_t), 0);
        inp->pos        = ggml_view_1d(ctx0, m.step_pos, T, 0);
        inp->score_rows = ggml_view_1d(ctx0, m.step_rows, T, 0);
    } else {
        inp->new_slots  = ggml_new_tensor_2d(ctx0, GGML_TYPE_I64, HT, m.n_layer);
        inp->pos        = ggml_new_tensor_1d(ctx0, GGML_TYPE_I32, T);
        inp->score_rows = ggml_new_tensor_1d(ctx0, GGML_TYPE_I64, T);
        for (ggml_tensor * t : { inp->n_old, inp->new_slots, inp->pos, inp->score_rows }) {
            if (t) ggml_set_input(t);
        }
    }
    return (llm_graph_input_attn_kv *)g.res->add_input(std::move(inp));
}

ggml_tensor * kvzap_build_attn_hook(const llm_graph_context & g, llm_graph_input_attn_kv * inp_base, ggml_tensor * wo,
                                    ggml_tensor * wo_b, ggml_tensor * wo_s, ggml_tensor * q_cur, ggml_tensor * k_cur,
                                    ggml_tensor * v_cur, ggml_tensor * kq_b, ggml_tensor * sinks, ggml_tensor * v_mla,
                                    float kq_scale, int il) {
    auto * inp = dynamic_cast<llm_graph_input_kvzap *>(inp_base);
    if (!inp) return nullptr;
    if (kq_b || sinks || v_mla || g.hparams.attn_soft_cap || g.hparams.f_max_alibi_bias > 0.0f) {
        throw std::runtime_error(
            "KVzap does not support this model's attention (bias, sinks, soft-capping, ALiBi or MLA)");
    }
    const llama_kvzap_memory & m = *inp->z->mem;
    const kvzap_params & P       = *m.params;
    ggml_context * ctx0          = g.ctx0;
    ggml_cgraph * gf             = g.gf;
    const int64_t T              = q_cur->ne[2];
    const int64_t H              = m.n_head_kv;

    ggml_build_forward_expand(gf, q_cur);
    ggml_build_forward_expand(gf, v_cur);
    ggml_build_forward_expand(gf, k_cur);

    // the surrogate: one score per KV head for every token, kept by position until the token leaves the window
    if (m.scores[il] || m.hidden[il] || m.queries[il]) {
        ggml_tensor * x = il < (int)inp->z->attn_norm.size() ? inp->z->attn_norm[il] : nullptr;
        if (!x) throw std::runtime_error("KVzap could not find this model's attn_norm tensor");
        x = ggml_reshape_2d(ctx0, x, x->ne[0], T);
        if (m.scores[il]) {
            // the output bias is the host's (score_bias): one kernel less per layer and step
            ggml_tensor * s = ggml_mul_mat(ctx0, m.sw1[il], x);
            if (P.surrogate == KVZAP_SURROGATE_MLP) {
                s = ggml_gelu_erf(ctx0, ggml_add(ctx0, s, m.sb1[il]));
                s = ggml_mul_mat(ctx0, m.sw2[il], s);
            }
            g.cb(s, "kvzap_scores", il);
            ggml_build_forward_expand(gf, ggml_set_rows(ctx0, m.scores[il], s, inp->score_rows));
        }
        if (m.hidden[il]) {
            ggml_build_forward_expand(gf, ggml_set_rows(ctx0, m.hidden[il], x, inp->score_rows));
        }
    }

    if (m.queries[il]) {
        m.kq_scale       = kq_scale;
        ggml_tensor * q2 = ggml_reshape_2d(ctx0, ggml_cont(ctx0, q_cur), q_cur->ne[0] * q_cur->ne[1], T);
        ggml_build_forward_expand(gf, ggml_set_rows(ctx0, m.queries[il], q2, inp->score_rows));
    }

    // store the ubatch's pairs: row (token t, head h) of k_cur goes to its head's slot
    ggml_tensor * slots = ggml_view_1d(ctx0, inp->new_slots, H * T, (size_t)il * inp->new_slots->nb[1]);
    // (a copy only where the projection left a strided view: every cont is a kernel per layer and decode step)
    const auto dense = [&](ggml_tensor * t) { return ggml_is_contiguous(t) ? t : ggml_cont(ctx0, t); };
    ggml_tensor * k2 = ggml_reshape_2d(ctx0, dense(k_cur), m.dk, H * T);
    ggml_tensor * v2 = ggml_reshape_2d(ctx0, dense(v_cur), m.dv, H * T);
    ggml_build_forward_expand(gf, ggml_set_rows(ctx0, m.k_pool, k2, slots));
    ggml_build_forward_expand(gf, ggml_set_rows(ctx0, m.v_pool, v2, slots));

    ggml_tensor * cur;
    const int64_t Hq = q_cur->ne[1];
    if (!P.reference) {
        ggml_tensor * bt = ggml_view_2d(ctx0, inp->block_table, inp->block_table->ne[0], H, inp->block_table->nb[1],
                                        (size_t)il * H * inp->block_table->nb[1]);
        ggml_tensor * no = ggml_view_1d(ctx0, inp->n_old, H, (size_t)il * H * sizeof(int32_t));
        cur              = ggml_kvzap_attn(ctx0, q_cur, m.k_pool, m.v_pool, bt, no, inp->pos, kq_scale, m.block_size);
        cur              = ggml_reshape_2d(ctx0, cur, m.dv * Hq, T);
    } else {
        const int64_t n_kv         = inp->mask->ne[0];
        const size_t head_stride_k = (size_t)m.n_ctx * m.k_pool->nb[1];
        const size_t head_stride_v = (size_t)m.n_ctx * m.v_pool->nb[1];
        ggml_tensor * k =
            ggml_view_3d(ctx0, m.k_pool, m.dk, n_kv, H, m.k_pool->nb[1], head_stride_k, (size_t)il * H * head_stride_k);
        ggml_tensor * v =
            ggml_view_3d(ctx0, m.v_pool, m.dv, n_kv, H, m.v_pool->nb[1], head_stride_v, (size_t)il * H * head_stride_v);
        ggml_tensor * q  = ggml_permute(ctx0, q_cur, 0, 2, 1, 3); // [dk, T, Hq]
        ggml_tensor * kq = ggml_mul_mat(ctx0, k, q);              // [n_kv, T, Hq]
        ggml_prec_set_acc(kq, GGML_PREC_F32);
        ggml_tensor * mask =
            P.oracle ? ggml_view_2d(ctx0, inp->mask, n_kv, T, inp->mask->nb[1], 0) // one causal mask for all
                     : ggml_view_3d(ctx0, inp->mask, n_kv, T, Hq, inp->mask->nb[1], inp->mask->nb[2],
                                    (size_t)il * inp->mask->nb[3]);
        kq               = ggml_soft_max_ext(ctx0, kq, mask, kq_scale, 0.0f);
        ggml_tensor * vt = ggml_cont(ctx0, ggml_transpose(ctx0, v)); // [n_kv, dv, H]
        if (vt->type != GGML_TYPE_F32) vt = ggml_cast(ctx0, vt, GGML_TYPE_F32);
        ggml_tensor * kqv = ggml_mul_mat(ctx0, vt, kq); // [dv, T, Hq]
        cur               = ggml_cont_2d(ctx0, ggml_permute(ctx0, kqv, 0, 2, 1, 3), m.dv * Hq, T);
    }
    g.cb(cur, "kqv_out", il);
    if (wo) cur = g.build_lora_mm(wo, cur, wo_s);
    if (wo_b) cur = ggml_add(ctx0, cur, wo_b);
    return cur;
}
