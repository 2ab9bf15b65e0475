#include "kvzap-memory.h"
#include "kvzap-compute.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "llama-impl.h"
#include "llama-io.h"

static thread_local std::shared_ptr<const kvzap_params> g_next_params;

void kvzap_set_next_params(std::shared_ptr<const kvzap_params> params) {
    g_next_params = std::move(params);
}

llama_memory_i * kvzap_create_memory_hook(const llama_model & model, const llama_memory_params & /*params*/, const llama_cparams & cparams) {
    if (!g_next_params) {
        return nullptr;
    }
    std::shared_ptr<const kvzap_params> p = std::move(g_next_params);
    g_next_params.reset();
    // llama_context's constructor turns this into a failed context creation with the message logged.
    return new llama_kvzap_memory(model, cparams, p);
}

static void check_model(const llama_model & model) {
    const llama_hparams & hp = model.hparams;
    if (llama_model_is_recurrent(&model) || llama_model_is_hybrid(&model) || hp.swa_type != LLAMA_SWA_TYPE_NONE) {
        throw std::runtime_error("KVzap supports models with standard attention only (this one has recurrent or sliding-window layers)");
    }
    for (uint32_t il = 0; il < hp.n_layer(); il++) {
        if (hp.n_head_kv(il) != hp.n_head_kv(0) || hp.n_head_kv(il) == 0) {
            throw std::runtime_error("KVzap needs the same number of KV heads in every layer");
        }
    }
    if (hp.attn_soft_cap || hp.f_max_alibi_bias > 0.0f) {
        throw std::runtime_error("KVzap does not support attention logit soft-capping or ALiBi");
    }
    if (hp.n_head(0) % hp.n_head_kv(0) != 0) {
        throw std::runtime_error("KVzap needs the query heads to be a multiple of the KV heads");
    }
}

llama_kvzap_memory::llama_kvzap_memory(const llama_model & model, const llama_cparams & cparams, std::shared_ptr<const kvzap_params> p)
    : params(std::move(p)), model(model), hparams(model.hparams) {
    check_model(model);
    if (params->oracle) {
        auto q = std::make_shared<kvzap_params>(*params);
        q->reference = true;
        q->capture_hidden = true;
        q->tau = -INFINITY;
        q->policy = KVZAP_POLICY_KVZAP;
        params = q;
    }
    const kvzap_params & P = *params;
    n_layer = (int32_t) hparams.n_layer();
    n_head_kv = (int32_t) hparams.n_head_kv(0);
    n_embd = (int32_t) hparams.n_embd;
    dk = (int32_t) hparams.n_embd_head_k(0);
    dv = (int32_t) hparams.n_embd_head_v(0);
    n_ctx = (int32_t) cparams.n_ctx_seq;
    block_size = std::max(1, P.block_size);
    ring = P.window + (int32_t) cparams.n_ubatch + 2;
    tau_effective = P.tau;
    if (P.window < 0) throw std::runtime_error("the window must be >= 0");
    if (P.policy == KVZAP_POLICY_KVZAP && !P.reference && !P.oracle && P.surrogate == KVZAP_SURROGATE_NONE) {
        throw std::runtime_error("the kvzap policy needs a surrogate (a profile)");
    }
    if (P.policy == KVZAP_POLICY_SCORES && (int32_t) P.external_scores.size() != n_layer) {
        throw std::runtime_error("the given scores have a different number of layers than the model");
    }
    if (P.surrogate != KVZAP_SURROGATE_NONE) {
        if ((int32_t) P.layers.size() != n_layer) throw std::runtime_error("the surrogate has a different number of layers than the model");
        const size_t din = (size_t) n_embd;
        const size_t dh = P.surrogate == KVZAP_SURROGATE_MLP ? (size_t) P.hidden : (size_t) n_head_kv;
        for (const auto & L : P.layers) {
            bool ok = L.w1.size() == dh * din && L.b1.size() == dh;
            if (P.surrogate == KVZAP_SURROGATE_MLP) ok = ok && L.w2.size() == (size_t) n_head_kv * dh && L.b2.size() == (size_t) n_head_kv;
            if (!ok) throw std::runtime_error("the surrogate's weight shapes do not match the model");
        }
    }

    const size_t row_k = ggml_row_size(P.type_k, dk);
    const size_t row_v = ggml_row_size(P.type_v, dv);
    const int64_t blocks_per_head_full = (n_ctx + block_size - 1) / block_size;
    const int64_t full_blocks = (int64_t) n_layer * n_head_kv * blocks_per_head_full;
    const int64_t block_bytes = (int64_t) block_size * (int64_t) (row_k + row_v);
    int64_t slots;
    if (P.reference) {
        n_blocks_cap = 0;
        slots = (int64_t) n_ctx * n_head_kv * n_layer;
    } else {
        n_blocks_cap = full_blocks;
        if (P.budget_bytes > 0) {
            n_blocks_cap = std::min<int64_t>(full_blocks, P.budget_bytes / block_bytes);
        }
        // The window and one ubatch must always fit in every head.
        const int64_t min_blocks = (int64_t) n_layer * n_head_kv * ((P.window + (int64_t) cparams.n_ubatch + 2 * block_size - 1) / block_size);
        if (n_blocks_cap < std::min(min_blocks, full_blocks)) {
            throw std::runtime_error("the KV budget (" + std::to_string(P.budget_bytes) + " bytes) is smaller than the window and one batch need (" +
                                     std::to_string(std::min(min_blocks, full_blocks) * block_bytes) + " bytes); raise the budget or lower the batch size");
        }
        slots = n_blocks_cap * block_size;
    }

    // The KVzap attention kernel is the CPU's for now, so its pool lives in host memory. The oracle uses only stock ops
    // (dense reference attention): with every layer on one GPU its memory goes there, and the whole pass runs on it.
    ggml_backend_buffer_type_t buft = ggml_backend_cpu_buffer_type();
    if (P.oracle) {
        ggml_backend_dev_t dev = model.dev_layer(0);
        bool same = dev != nullptr && ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU;
        for (int32_t il = 1; il < (int32_t) hparams.n_layer() && same; il++) same = model.dev_layer(il) == dev;
        if (same) buft = ggml_backend_dev_buffer_type(dev);
    }
    const int n_tensors = 2 + 3 * n_layer + 4 * n_layer;
    ggml_init_params ip = {(size_t) n_tensors * ggml_tensor_overhead(), nullptr, true};
    ggml_context * ctx = ggml_init(ip);
    if (!ctx) throw std::runtime_error("failed to create the KVzap ggml context");
    ctxs.emplace_back(ctx, ggml_free);

    k_pool = ggml_new_tensor_2d(ctx, P.type_k, dk, slots);
    v_pool = ggml_new_tensor_2d(ctx, P.type_v, dv, slots);
    ggml_format_name(k_pool, "kvzap_k_pool");
    ggml_format_name(v_pool, "kvzap_v_pool");
    const bool need_scores = P.surrogate != KVZAP_SURROGATE_NONE;
    for (int32_t il = 0; il < n_layer; il++) {
        scores.push_back(need_scores ? ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_head_kv, n_ctx) : nullptr);
        hidden.push_back(P.capture_hidden ? ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_embd, n_ctx) : nullptr);
        queries.push_back(P.oracle ? ggml_new_tensor_2d(ctx, GGML_TYPE_F32, (int64_t) dk * hparams.n_head(0), n_ctx) : nullptr);
        if (need_scores) {
            const int64_t dh = P.surrogate == KVZAP_SURROGATE_MLP ? P.hidden : n_head_kv;
            sw1.push_back(ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_embd, dh));
            sb1.push_back(ggml_new_tensor_1d(ctx, GGML_TYPE_F32, dh));
            if (P.surrogate == KVZAP_SURROGATE_MLP) {
                sw2.push_back(ggml_new_tensor_2d(ctx, GGML_TYPE_F32, dh, n_head_kv));
                sb2.push_back(ggml_new_tensor_1d(ctx, GGML_TYPE_F32, n_head_kv));
            }
        }
    }
    ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors_from_buft(ctx, buft);
    if (!buf && buft != ggml_backend_cpu_buffer_type()) {  // the oracle's memory did not fit the GPU: host memory then
        buf = ggml_backend_alloc_ctx_tensors_from_buft(ctx, ggml_backend_cpu_buffer_type());
    }
    if (!buf) throw std::runtime_error("failed to allocate the KVzap pool (" + std::to_string(slots) + " slots)");
    ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
    ggml_backend_buffer_clear(buf, 0);
    bufs.emplace_back(buf);
    for (int32_t il = 0; il < n_layer && need_scores; il++) {
        const auto & L = P.layers[il];
        ggml_backend_tensor_set(sw1[il], L.w1.data(), 0, L.w1.size() * sizeof(float));
        ggml_backend_tensor_set(sb1[il], L.b1.data(), 0, L.b1.size() * sizeof(float));
        if (P.surrogate == KVZAP_SURROGATE_MLP) {
            ggml_backend_tensor_set(sw2[il], L.w2.data(), 0, L.w2.size() * sizeof(float));
            ggml_backend_tensor_set(sb2[il], L.b2.data(), 0, L.b2.size() * sizeof(float));
        }
    }
    heads.assign((size_t) n_layer * n_head_kv, kvzap_head());
    win.assign((size_t) n_layer * n_head_kv, std::vector<int32_t>(ring, -1));
    protected_pos.assign(n_ctx, 0);
    clear(false);
    LLAMA_LOG_INFO("%s: KVzap memory: %s, tau = %.3f, window = %d, %lld blocks of %d (%.2f MiB), %s/%s\n", __func__,
                   P.reference ? "reference" : kvzap_policy_name(P.policy), P.tau, P.window,
                   (long long) n_blocks_cap, block_size, ggml_backend_buffer_get_size(buf) / 1048576.0, ggml_type_name(P.type_k),
                   ggml_type_name(P.type_v));
}

void llama_kvzap_memory::clear(bool /*data*/) {
    for (auto & hd : heads) {
        hd = kvzap_head();
    }
    for (auto & w : win) std::fill(w.begin(), w.end(), -1);
    std::fill(protected_pos.begin(), protected_pos.end(), 0);
    free_blocks.clear();
    for (int64_t b = n_blocks_cap - 1; b >= 0; b--) free_blocks.push_back((int32_t) b);
    n_pos = 0;
    win_start = 0;
    tau_effective = params->tau;
    n_evicted = 0;
    n_budget_evicted = 0;
    last_error.clear();
}

llama_pos llama_kvzap_memory::seq_pos_min(llama_seq_id seq_id) const {
    return (seq_id == 0 || seq_id == -1) && n_pos > 0 ? 0 : -1;
}

llama_pos llama_kvzap_memory::seq_pos_max(llama_seq_id seq_id) const {
    return (seq_id == 0 || seq_id == -1) ? n_pos - 1 : -1;
}

bool llama_kvzap_memory::keep(int32_t /*il*/, int32_t /*h*/, int32_t p, float s) const {
    if (protected_pos[p]) return true;
    if (params->policy == KVZAP_POLICY_WINDOW) return p < params->n_sink;
    return s >= params->tau;
}

float llama_kvzap_memory::score_at(int32_t il, int32_t h, int32_t p) const {
    if (params->policy == KVZAP_POLICY_RANDOM || params->policy == KVZAP_POLICY_SCORES) return kvzap_policy_score(*params, il, h, p, n_head_kv);
    if (!scores[il]) return -std::numeric_limits<float>::infinity();
    float s;
    const size_t off = ((size_t) p * n_head_kv + h) * sizeof(float);
    if (ggml_backend_buffer_is_host(scores[il]->buffer)) {
        s = *(const float *) ((const char *) scores[il]->data + off);
    } else {
        ggml_backend_tensor_get(scores[il], &s, off, sizeof(float));
    }
    return s;
}

// Removes list entry idx of head (il, h): the last entry takes its place (its rows move), and a block left empty at
// the end of the list goes back to the pool. Window entries (positions >= ring_from) keep their ring slot current.
void llama_kvzap_memory::remove_entry(int32_t il, int32_t h, int32_t idx, std::vector<kvzap_move> & moves) {
    kvzap_head & hd = head(il, h);
    const int32_t last = hd.len - 1;
    if (idx != last) {
        moves.push_back({slot(hd, last), slot(hd, idx)});
        hd.pos[idx] = hd.pos[last];
        hd.score[idx] = hd.score[last];
        const int32_t p = hd.pos[idx];
        if (p >= win_start) {
            win[(size_t) il * n_head_kv + h][p % ring] = idx;
        }
    }
    hd.len--;
    hd.pos.pop_back();
    hd.score.pop_back();
    if (hd.len % block_size == 0) {
        free_blocks.push_back(hd.blocks.back());
        hd.blocks.pop_back();
    }
}

void llama_kvzap_memory::apply_moves(const std::vector<kvzap_move> & moves) {
    if (moves.empty()) return;
    const size_t rk = k_pool->nb[1], rv = v_pool->nb[1];
    if (ggml_backend_buffer_is_host(k_pool->buffer)) {
        char * k = (char *) k_pool->data;
        char * v = (char *) v_pool->data;
        for (const auto & m : moves) {
            memcpy(k + m.dst * rk, k + m.src * rk, rk);
            memcpy(v + m.dst * rv, v + m.src * rv, rv);
        }
        return;
    }
    std::vector<char> row(std::max(rk, rv));
    for (const auto & m : moves) {
        ggml_backend_tensor_get(k_pool, row.data(), m.src * rk, rk);
        ggml_backend_tensor_set(k_pool, row.data(), m.dst * rk, rk);
        ggml_backend_tensor_get(v_pool, row.data(), m.src * rv, rv);
        ggml_backend_tensor_set(v_pool, row.data(), m.dst * rv, rv);
    }
}

int64_t llama_kvzap_memory::blocks_in_use() const {
    return n_blocks_cap - (int64_t) free_blocks.size();
}

// Frees at least need_blocks blocks (and some headroom, so that this stays rare) by removing the lowest-scoring
// pairs outside the window, over all layers and heads: the threshold is effectively raised.
bool llama_kvzap_memory::enforce_budget(int64_t need_blocks, std::vector<kvzap_move> & moves) {
    struct cand {
        float s;
        int32_t il, h, p;
    };
    std::vector<cand> cands;
    for (int32_t il = 0; il < n_layer; il++) {
        for (int32_t h = 0; h < n_head_kv; h++) {
            const kvzap_head & hd = head(il, h);
            for (int32_t i = 0; i < hd.len; i++) {
                if (hd.pos[i] < win_start) cands.push_back({hd.score[i], il, h, hd.pos[i]});
            }
        }
    }
    std::sort(cands.begin(), cands.end(), [](const cand & a, const cand & b) { return a.s < b.s; });
    const int64_t headroom = std::max<int64_t>(n_blocks_cap / 32, (int64_t) n_layer * n_head_kv);
    const int64_t target = need_blocks + headroom;
    std::vector<int32_t> new_len(heads.size());
    for (size_t i = 0; i < heads.size(); i++) new_len[i] = heads[i].len;
    int64_t freed = (int64_t) free_blocks.size();
    size_t n_take = 0;
    for (; n_take < cands.size() && freed < target; n_take++) {
        const cand & c = cands[n_take];
        int32_t & l = new_len[(size_t) c.il * n_head_kv + c.h];
        l--;
        if (l % block_size == 0) freed++;
    }
    if (freed < need_blocks) {
        return false;
    }
    if (n_take > 0) {
        tau_effective = std::max(tau_effective, std::nextafter(cands[n_take - 1].s, std::numeric_limits<float>::infinity()));
    }
    // Remove the chosen pairs head by head, following entries as removals move them.
    std::vector<std::vector<int32_t>> victims(heads.size());
    for (size_t i = 0; i < n_take; i++) victims[(size_t) cands[i].il * n_head_kv + cands[i].h].push_back(cands[i].p);
    for (int32_t il = 0; il < n_layer; il++) {
        for (int32_t h = 0; h < n_head_kv; h++) {
            auto & vs = victims[(size_t) il * n_head_kv + h];
            if (vs.empty()) continue;
            kvzap_head & hd = head(il, h);
            std::unordered_map<int32_t, int32_t> idx_of;
            for (int32_t i = 0; i < hd.len; i++) idx_of[hd.pos[i]] = i;
            for (int32_t p : vs) {
                const int32_t idx = idx_of[p];
                const int32_t last = hd.len - 1;
                const int32_t moved_pos = hd.pos[last];
                remove_entry(il, h, idx, moves);
                if (idx != last) idx_of[moved_pos] = idx;
                idx_of.erase(p);
                n_evicted++;
                n_budget_evicted++;
            }
        }
    }
    return true;
}

// Decides the pairs of positions [win_start, boundary): they leave the window (the next query is at boundary + window).
void llama_kvzap_memory::evict_until(int32_t boundary, std::vector<kvzap_move> & moves) {
    boundary = std::min(boundary, n_pos);
    for (int32_t p = win_start; p < boundary; p++) {
        win_start = p + 1;  // entries at positions <= p are no longer window entries
        for (int32_t il = 0; il < n_layer; il++) {
            for (int32_t h = 0; h < n_head_kv; h++) {
                int32_t & slot_ref = win[(size_t) il * n_head_kv + h][p % ring];
                const int32_t idx = slot_ref;
                slot_ref = -1;
                if (idx < 0) continue;
                const float s = score_at(il, h, p);
                if (keep(il, h, p, s)) {
                    head(il, h).score[idx] = s;
                } else {
                    remove_entry(il, h, idx, moves);
                    n_evicted++;
                }
            }
        }
    }
}

// After a batch: the next query will be at n_pos, so what is older than the window now can go already (the same
// decisions the next batch would take first), and the memory in use is what it will be.
void llama_kvzap_memory::settle() {
    if (params->reference) return;
    std::vector<kvzap_move> moves;
    evict_until(n_pos - params->window, moves);
    apply_moves(moves);
}

bool llama_kvzap_memory::prepare_ubatch(const llama_ubatch & ub, kvzap_ubatch_plan & plan) {
    const kvzap_params & P = *params;
    const int32_t T = (int32_t) ub.n_tokens;
    const int32_t q0 = ub.pos[0];
    for (int32_t t = 0; t < T; t++) {
        if (ub.pos[t] != q0 + t || ub.seq_id[t][0] != 0 || ub.n_seq_id[t] != 1) {
            last_error = "KVzap holds one sequence of consecutive positions";
            return false;
        }
    }
    if (q0 != n_pos) {
        last_error = "KVzap expects position " + std::to_string(n_pos) + ", got " + std::to_string(q0);
        return false;
    }
    if (q0 + T > n_ctx) {
        last_error = "the context is full";
        return false;
    }
    plan.n_tokens = T;
    plan.q0 = q0;
    plan.pos.resize(T);
    plan.score_rows.resize(T);
    for (int32_t t = 0; t < T; t++) {
        plan.pos[t] = q0 + t;
        plan.score_rows[t] = q0 + t;
    }
    plan.new_slots.assign((size_t) n_layer * T * n_head_kv, 0);
    plan.n_old.assign((size_t) n_layer * n_head_kv, 0);

    if (P.reference) {
        for (int32_t il = 0; il < n_layer; il++) {
            for (int32_t h = 0; h < n_head_kv; h++) {
                for (int32_t t = 0; t < T; t++) {
                    plan.new_slots[((size_t) il * T + t) * n_head_kv + h] = ((int64_t) il * n_head_kv + h) * n_ctx + q0 + t;
                }
                kvzap_head & hd = head(il, h);
                plan.n_old[(size_t) il * n_head_kv + h] = hd.len;
                for (int32_t t = 0; t < T; t++) {
                    hd.pos.push_back(q0 + t);
                    hd.score.push_back(NAN);
                }
                hd.len += T;
            }
        }
        plan.n_kv_ref = q0 + T;
        plan.nb_max = 1;
        plan.block_table.assign((size_t) n_layer * n_head_kv, 0);
        for (int32_t t = 0; t < T; t++) protected_pos[q0 + t] = evicting ? 0 : 1;
        n_pos = q0 + T;
        return true;
    }

    std::vector<kvzap_move> moves;
    // 1. pairs that leave the window: kept only where the rule says so
    evict_until(q0 - P.window, moves);

    // 2. room for the new pairs
    int64_t need = 0;
    for (const auto & hd : heads) {
        need += (hd.len + T + block_size - 1) / block_size - (hd.len + block_size - 1) / block_size;
    }
    if (need > (int64_t) free_blocks.size() && !enforce_budget(need, moves)) {
        apply_moves(moves);
        last_error = "the KV pool is exhausted: " + std::to_string(blocks_in_use()) + " of " + std::to_string(n_blocks_cap) +
                     " blocks hold the window and protected tokens; raise --kv-budget or shorten the window";
        return false;
    }
    apply_moves(moves);

    // 3. the ubatch's pairs go at the end of every head's list
    int32_t nb_max = 1;
    for (int32_t il = 0; il < n_layer; il++) {
        for (int32_t h = 0; h < n_head_kv; h++) {
            kvzap_head & hd = head(il, h);
            plan.n_old[(size_t) il * n_head_kv + h] = hd.len;
            for (int32_t t = 0; t < T; t++) {
                const int32_t idx = hd.len++;
                if (idx % block_size == 0) {
                    hd.blocks.push_back(free_blocks.back());
                    free_blocks.pop_back();
                }
                hd.pos.push_back(q0 + t);
                hd.score.push_back(NAN);
                win[(size_t) il * n_head_kv + h][(q0 + t) % ring] = idx;
                plan.new_slots[((size_t) il * T + t) * n_head_kv + h] = slot(hd, idx);
            }
            nb_max = std::max<int32_t>(nb_max, (int32_t) hd.blocks.size());
        }
    }
    plan.nb_max = nb_max;
    plan.block_table.assign((size_t) n_layer * n_head_kv * nb_max, 0);
    for (int32_t il = 0; il < n_layer; il++) {
        for (int32_t h = 0; h < n_head_kv; h++) {
            const kvzap_head & hd = head(il, h);
            std::copy(hd.blocks.begin(), hd.blocks.end(), plan.block_table.begin() + ((size_t) il * n_head_kv + h) * nb_max);
        }
    }
    for (int32_t t = 0; t < T; t++) protected_pos[q0 + t] = evicting ? 0 : 1;
    n_pos = q0 + T;
    return true;
}

void llama_kvzap_memory::plan_worst_case(uint32_t n_tokens, kvzap_ubatch_plan & plan) const {
    const int32_t T = (int32_t) n_tokens;
    plan.n_tokens = T;
    plan.q0 = 0;
    plan.pos.assign(T, 0);
    plan.score_rows.assign(T, 0);
    plan.new_slots.assign((size_t) n_layer * T * n_head_kv, 0);
    plan.n_old.assign((size_t) n_layer * n_head_kv, 0);
    plan.nb_max = params->reference ? 1 : (n_ctx + block_size - 1) / block_size;
    plan.block_table.assign((size_t) n_layer * n_head_kv * plan.nb_max, 0);
    plan.n_kv_ref = n_ctx;
}

bool llama_kvzap_memory::seq_rm(llama_seq_id seq_id, llama_pos p0, llama_pos p1) {
    if (seq_id > 0) return false;
    if (p0 < 0) p0 = 0;
    if (p1 >= 0 && p1 < n_pos) return false;  // only a suffix can go: the rest shaped what was kept
    if (p0 == 0) {
        clear(true);
        return true;
    }
    if (p0 >= n_pos) return true;
    if (params->reference) {
        for (auto & hd : heads) {
            while (hd.len > 0 && hd.pos[hd.len - 1] >= p0) {
                hd.len--;
                hd.pos.pop_back();
                hd.score.pop_back();
            }
        }
        for (int32_t p = p0; p < n_pos; p++) protected_pos[p] = 0;
        n_pos = p0;
        return true;
    }
    std::vector<kvzap_move> moves;
    for (int32_t il = 0; il < n_layer; il++) {
        for (int32_t h = 0; h < n_head_kv; h++) {
            kvzap_head & hd = head(il, h);
            for (int32_t idx = hd.len - 1; idx >= 0; idx--) {
                if (hd.pos[idx] >= p0) remove_entry(il, h, idx, moves);
            }
            auto & w = win[(size_t) il * n_head_kv + h];
            for (int32_t p = std::max(p0, n_pos - ring); p < n_pos; p++) w[p % ring] = -1;
        }
    }
    apply_moves(moves);
    for (int32_t p = p0; p < n_pos; p++) protected_pos[p] = 0;
    n_pos = p0;
    win_start = std::min(win_start, p0);
    return true;
}

std::map<ggml_backend_buffer_type_t, size_t> llama_kvzap_memory::memory_breakdown() const {
    std::map<ggml_backend_buffer_type_t, size_t> out;
    for (const auto & b : bufs) out[ggml_backend_buffer_get_type(b.get())] += ggml_backend_buffer_get_size(b.get());
    return out;
}

kvzap_stats llama_kvzap_memory::stats() const {
    kvzap_stats s;
    s.active = true;
    s.policy = params->policy;
    s.tau = params->tau;
    s.tau_effective = tau_effective;
    s.window = params->window;
    s.block_size = block_size;
    const int64_t row_bytes = (int64_t) (ggml_row_size(params->type_k, dk) + ggml_row_size(params->type_v, dv));
    s.block_bytes = row_bytes * block_size;
    s.pool_blocks = n_blocks_cap;
    s.tokens = n_pos;
    s.evicted = n_evicted;
    s.budget_evicted = n_budget_evicted;
    s.n_layer = n_layer;
    s.n_head_kv = n_head_kv;
    for (const auto & hd : heads) {
        const int32_t blocks = params->reference ? (hd.len + block_size - 1) / block_size : (int32_t) hd.blocks.size();
        s.heads.push_back({hd.len, blocks});
        s.blocks_in_use += blocks;
    }
    s.bytes_in_use = s.blocks_in_use * s.block_bytes;
    s.bytes_full_equivalent = (int64_t) n_pos * n_layer * n_head_kv * row_bytes;
    // per token: surrogate multiply-adds over the layers' projection and FFN multiply-adds
    const double d = n_embd, hq = hparams.n_head(0) * (double) dk, hkv = n_head_kv * (double) dk, ff = hparams.n_ff(0);
    const double layer = d * (hq + 2 * hkv) + hq * d + 3 * d * ff;
    double sur = 0;
    if (params->surrogate == KVZAP_SURROGATE_LINEAR) sur = d * n_head_kv;
    if (params->surrogate == KVZAP_SURROGATE_MLP) sur = d * params->hidden + params->hidden * (double) n_head_kv;
    s.surrogate_flops_share = layer > 0 ? sur / layer : 0;
    return s;
}

bool llama_kvzap_memory::read_rows(const std::vector<ggml_tensor *> & t, int32_t il, int32_t p0, int32_t p1, int64_t width, float * out) const {
    if (il < 0 || il >= n_layer || !t[il] || p0 < 0 || p1 > n_pos || p0 > p1) return false;
    ggml_backend_tensor_get(t[il], out, (size_t) p0 * width * sizeof(float), (size_t) (p1 - p0) * width * sizeof(float));
    return true;
}

// ---- state: the pairs each head holds, in list order, with their positions and scores ----

static const uint32_t KVZAP_STATE_MAGIC = 0x4b565a31;  // "KVZ1"

void llama_kvzap_memory::state_write(llama_io_write_i & io, llama_seq_id seq_id, llama_state_seq_flags /*flags*/) const {
    if (seq_id > 0) return;
    const int32_t hdr[8] = {(int32_t) KVZAP_STATE_MAGIC, n_layer, n_head_kv, dk, dv, n_pos, win_start, params->reference ? 1 : 0};
    io.write(hdr, sizeof(hdr));
    const int32_t types[2] = {(int32_t) params->type_k, (int32_t) params->type_v};
    io.write(types, sizeof(types));
    io.write(&tau_effective, sizeof(tau_effective));
    io.write(protected_pos.data(), (size_t) n_pos);
    const size_t rk = k_pool->nb[1], rv = v_pool->nb[1];
    std::vector<char> row(std::max(rk, rv));
    for (int32_t il = 0; il < n_layer; il++) {
        for (int32_t h = 0; h < n_head_kv; h++) {
            const kvzap_head & hd = head(il, h);
            io.write(&hd.len, sizeof(hd.len));
            io.write(hd.pos.data(), hd.len * sizeof(int32_t));
            io.write(hd.score.data(), hd.len * sizeof(float));
            for (int32_t i = 0; i < hd.len; i++) {
                const int64_t sl = params->reference ? ((int64_t) il * n_head_kv + h) * n_ctx + hd.pos[i] : slot(hd, i);
                io.write_tensor(k_pool, sl * rk, rk);
                io.write_tensor(v_pool, sl * rv, rv);
            }
        }
    }
    // scores of the positions still in the window are needed when they leave it
    for (int32_t il = 0; il < n_layer; il++) {
        if (scores[il] && n_pos > 0) io.write_tensor(scores[il], 0, (size_t) n_pos * n_head_kv * sizeof(float));
    }
}

void llama_kvzap_memory::state_read(llama_io_read_i & io, llama_seq_id seq_id, llama_state_seq_flags /*flags*/) {
    if (seq_id > 0) return;
    int32_t hdr[8];
    io.read(hdr, sizeof(hdr));
    if ((uint32_t) hdr[0] != KVZAP_STATE_MAGIC || hdr[1] != n_layer || hdr[2] != n_head_kv || hdr[3] != dk || hdr[4] != dv ||
        hdr[7] != (params->reference ? 1 : 0)) {
        throw std::runtime_error("the saved state is not a KVzap state of this model and mode");
    }
    int32_t types[2];
    io.read(types, sizeof(types));
    if (types[0] != (int32_t) params->type_k || types[1] != (int32_t) params->type_v) {
        throw std::runtime_error("the saved state has other KV types");
    }
    if (hdr[5] > n_ctx) throw std::runtime_error("the saved state holds more tokens than this context");
    clear(true);
    io.read(&tau_effective, sizeof(tau_effective));
    n_pos = hdr[5];
    win_start = hdr[6];
    io.read(protected_pos.data(), (size_t) n_pos);
    const size_t rk = k_pool->nb[1], rv = v_pool->nb[1];
    std::vector<char> rowk(rk), rowv(rv);
    for (int32_t il = 0; il < n_layer; il++) {
        for (int32_t h = 0; h < n_head_kv; h++) {
            kvzap_head & hd = head(il, h);
            int32_t len;
            io.read(&len, sizeof(len));
            if (len < 0 || len > n_ctx) throw std::runtime_error("corrupt KVzap state");
            hd.pos.resize(len);
            hd.score.resize(len);
            io.read(hd.pos.data(), len * sizeof(int32_t));
            io.read(hd.score.data(), len * sizeof(float));
            for (int32_t i = 0; i < len; i++) {
                if (!params->reference && i % block_size == 0) {
                    if (free_blocks.empty()) throw std::runtime_error("the saved state does not fit in this KV pool");
                    hd.blocks.push_back(free_blocks.back());
                    free_blocks.pop_back();
                }
                hd.len = i + 1;
                const int64_t sl = params->reference ? ((int64_t) il * n_head_kv + h) * n_ctx + hd.pos[i] : slot(hd, i);
                io.read(rowk.data(), rk);
                io.read(rowv.data(), rv);
                ggml_backend_tensor_set(k_pool, rowk.data(), sl * rk, rk);
                ggml_backend_tensor_set(v_pool, rowv.data(), sl * rv, rv);
                if (hd.pos[i] >= win_start) win[(size_t) il * n_head_kv + h][hd.pos[i] % ring] = i;
            }
            hd.len = len;
        }
    }
    for (int32_t il = 0; il < n_layer; il++) {
        if (scores[il] && n_pos > 0) io.read_tensor(scores[il], 0, (size_t) n_pos * n_head_kv * sizeof(float));
    }
}

// ---- memory contexts ----

llama_memory_context_ptr llama_kvzap_memory::init_batch(llama_batch_allocr & balloc, uint32_t n_ubatch, bool /*embd_all*/) {
    balloc.split_reset();
    std::vector<llama_ubatch> ubatches;
    while (true) {
        llama_ubatch ub = balloc.split_simple(n_ubatch);
        if (ub.n_tokens == 0) break;
        ubatches.push_back(std::move(ub));
    }
    if (balloc.get_n_used() < balloc.get_n_tokens() || ubatches.empty()) {
        return std::make_unique<llama_kvzap_memory_context>(LLAMA_MEMORY_STATUS_FAILED_PREPARE);
    }
    return std::make_unique<llama_kvzap_memory_context>(this, std::move(ubatches), false);
}

llama_memory_context_ptr llama_kvzap_memory::init_full() {
    return std::make_unique<llama_kvzap_memory_context>(this, std::vector<llama_ubatch>(), true);
}

llama_memory_context_ptr llama_kvzap_memory::init_update(llama_context * /*lctx*/, bool /*optimize*/) {
    return std::make_unique<llama_kvzap_memory_context>(LLAMA_MEMORY_STATUS_NO_UPDATE);
}

bool llama_kvzap_memory_context::next() {
    return ++i_next < ubatches.size();
}

bool llama_kvzap_memory_context::apply() {
    if (full || !mem) return true;
    if (!mem->prepare_ubatch(ubatches[i_next], plan)) {
        LLAMA_LOG_ERROR("%s: %s\n", __func__, mem->last_error.c_str());
        return false;
    }
    return true;
}

const llama_ubatch & llama_kvzap_memory_context::get_ubatch() const {
    return ubatches[i_next];
}

// ---- KVzip+ oracle ----

// Rows [p0, p0 + n) of a [width, rows] tensor as f32 (converting f16/bf16 rows).
static void read_f32_rows(const ggml_tensor * t, int64_t row0, int64_t n, std::vector<float> & out) {
    const int64_t w = t->ne[0];
    out.resize((size_t) (n * w));
    std::vector<char> raw((size_t) (n * t->nb[1]));
    ggml_backend_tensor_get(t, raw.data(), (size_t) (row0 * t->nb[1]), raw.size());
    if (t->type == GGML_TYPE_F32) {
        memcpy(out.data(), raw.data(), out.size() * sizeof(float));
    } else {
        const auto * tr = ggml_get_type_traits(t->type);
        for (int64_t r = 0; r < n; r++) tr->to_float(raw.data() + r * t->nb[1], out.data() + r * w, w);
    }
}

bool llama_kvzap_memory::oracle_scores(int32_t c0, int32_t c1, int32_t q0, int32_t q1, float * out, int n_threads, kvzap_device device,
                                       kvzap_device * used) const {
    // c1 <= q1: keys past the last query are seen by none (and the kernels read keys 0..q1 only)
    if (!params->oracle || c0 < 0 || c1 > q1 || c0 > c1 || q0 < 0 || q1 > n_pos || q0 > q1 || kq_scale == 0.0f) return false;
    const int32_t Hq = (int32_t) hparams.n_head(0);
    const int32_t nc = c1 - c0, nq = q1 - q0;
    std::fill(out, out + (size_t) n_layer * nc * n_head_kv, 0.0f);
    const bool have_cuda = device != KVZAP_DEVICE_CPU && kvzap_cuda_device_count() > 0;
    const bool cuda = device == KVZAP_DEVICE_CUDA || (device == KVZAP_DEVICE_AUTO && have_cuda);
    if (device == KVZAP_DEVICE_CUDA && !have_cuda) {
        last_oracle_error = "no CUDA device: the addon was built without CUDA, or no GPU is visible";
        return false;
    }
    if (used) *used = cuda ? KVZAP_DEVICE_CUDA : KVZAP_DEVICE_CPU;
    if (nc == 0 || nq == 0) return true;
    std::vector<float> wrows, K, V, Q, X, rows, xnorm((size_t) nq);
    oracle_gram.resize((size_t) n_layer);
    for (int32_t il = 0; il < n_layer; il++) {
        if (oracle_gram[il].empty()) {
            const ggml_tensor * wo = model.layers[il].wo;
            if (!wo || wo->ne[0] != (int64_t) Hq * dv) {
                last_oracle_error = "the model's attention output projection has an unexpected shape";
                return false;
            }
            read_f32_rows(wo, 0, wo->ne[1], wrows);
            oracle_gram[il].resize((size_t) Hq * dv * dv);
            kvzap_oracle_gram(wrows.data(), wo->ne[1], Hq, dv, oracle_gram[il].data(), n_threads);
        }
        // keys of every position 0..q1 and values of the context, per KV head; queries and attn_norm norms
        K.resize((size_t) n_head_kv * q1 * dk);
        V.resize((size_t) n_head_kv * nc * dv);
        for (int32_t h = 0; h < n_head_kv; h++) {
            const int64_t base = ((int64_t) il * n_head_kv + h) * n_ctx;
            read_f32_rows(k_pool, base, q1, rows);
            std::copy(rows.begin(), rows.end(), K.begin() + (size_t) h * q1 * dk);
            read_f32_rows(v_pool, base + c0, nc, rows);
            std::copy(rows.begin(), rows.end(), V.begin() + (size_t) h * nc * dv);
        }
        read_f32_rows(queries[il], q0, nq, Q);
        read_f32_rows(hidden[il], q0, nq, X);
        for (int32_t j = 0; j < nq; j++) {
            double s = 0;
            for (int32_t d = 0; d < n_embd; d++) s += (double) X[(size_t) j * n_embd + d] * X[(size_t) j * n_embd + d];
            xnorm[j] = (float) std::sqrt(s);
        }
        const kvzap_oracle_layer L = {Hq, n_head_kv, dk, dv, c0, c1, q0, q1, kq_scale, K.data(), V.data(), Q.data(), xnorm.data(), oracle_gram[il].data()};
        float * o = out + (size_t) il * nc * n_head_kv;
        bool on_cpu = !cuda;
        if (cuda) {
            std::string err;
            if (!kvzap_cuda_oracle_layer(L, o, err)) {
                if (device == KVZAP_DEVICE_CUDA) {
                    last_oracle_error = "the CUDA oracle failed: " + err;
                    return false;
                }
                LLAMA_LOG_WARN("%s: the CUDA oracle failed (%s); layer %d on the CPU\n", __func__, err.c_str(), il);
                on_cpu = true;
                if (used) *used = KVZAP_DEVICE_CPU;
            }
        }
        if (on_cpu) kvzap_oracle_layer_cpu(L, o, n_threads);
    }
    return true;
}

bool kvzap_oracle_rows(const llama_memory_i * mem, int32_t il, int32_t p0, int32_t p1, std::vector<float> & q, std::vector<float> & k,
                       std::vector<float> & v) {
    const auto * m = dynamic_cast<const llama_kvzap_memory *>(mem);
    if (!m || !m->params->oracle || il < 0 || il >= m->n_layer || p0 < 0 || p1 > m->positions() || p0 > p1) return false;
    read_f32_rows(m->queries[il], p0, p1 - p0, q);
    k.clear();
    v.clear();
    std::vector<float> rows;
    for (int32_t h = 0; h < m->n_head_kv; h++) {
        const int64_t base = ((int64_t) il * m->n_head_kv + h) * m->n_ctx;
        read_f32_rows(m->k_pool, base + p0, p1 - p0, rows);
        k.insert(k.end(), rows.begin(), rows.end());
        read_f32_rows(m->v_pool, base + p0, p1 - p0, rows);
        v.insert(v.end(), rows.begin(), rows.end());
    }
    return true;
}

bool kvzap_oracle_scores(const llama_memory_i * mem, int32_t c0, int32_t c1, int32_t q0, int32_t q1, float * out, int n_threads,
                         kvzap_device device, kvzap_device * used, std::string * err) {
    const auto * m = dynamic_cast<const llama_kvzap_memory *>(mem);
    if (!m) {
        if (err) *err = "the session's memory is not an oracle memory";
        return false;
    }
    m->last_oracle_error.clear();
    const bool ok = m->oracle_scores(c0, c1, q0, q1, out, n_threads, device, used);
    if (!ok && err) *err = m->last_oracle_error;
    return ok;
}

// ---- inspection ----

kvzap_stats kvzap_get_stats(const llama_memory_i * mem) {
    const auto * m = dynamic_cast<const llama_kvzap_memory *>(mem);
    return m ? m->stats() : kvzap_stats();
}

bool kvzap_get_scores(const llama_memory_i * mem, int32_t il, int32_t p0, int32_t p1, float * out) {
    const auto * m = dynamic_cast<const llama_kvzap_memory *>(mem);
    return m && m->read_rows(m->scores, il, p0, p1, m->n_head_kv, out);
}

bool kvzap_get_hidden(const llama_memory_i * mem, int32_t il, int32_t p0, int32_t p1, float * out) {
    const auto * m = dynamic_cast<const llama_kvzap_memory *>(mem);
    return m && m->read_rows(m->hidden, il, p0, p1, m->n_embd, out);
}

void kvzap_settle(llama_memory_i * mem) {
    if (auto * m = dynamic_cast<llama_kvzap_memory *>(mem)) m->settle();
}

void kvzap_set_evicting(llama_memory_i * mem, bool evicting) {
    if (auto * m = dynamic_cast<llama_kvzap_memory *>(mem)) m->evicting = evicting;
}

std::string kvzap_last_error(const llama_memory_i * mem) {
    const auto * m = dynamic_cast<const llama_kvzap_memory *>(mem);
    return m ? m->last_error : std::string();
}
