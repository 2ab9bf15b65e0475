#include "kvzap-capture.h"
#include "kvzap-memory.h"
#include "kvzap-compute.h"
#include "kvzap-policy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#if !defined(_WIN32)
#    include <unistd.h>
#endif

#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "llama-impl.h"
#include "llama-io.h"

static thread_local std::shared_ptr<const kvzap_params> g_next_params;

void kvzap_set_next_params(std::shared_ptr<const kvzap_params> params) {
    g_next_params = std::move(params);
}

llama_memory_i * kvzap_create_memory_hook(const llama_model & model, const llama_memory_params & /*params*/,
                                          const llama_cparams & cparams) {
    if (!g_next_params) {
        return nullptr;
    }
    std::shared_ptr<const kvzap_params> p = std::move(g_next_params);
    g_next_params.reset();
    // llama_context's constructor turns this into a failed context creation with the message logged.
    if (p->reference || p->oracle) return new llama_kvzap_capture_memory(model, cparams, p);
    return new llama_kvzap_memory(model, cparams, p);
}

static void check_model(const llama_model & model) {
    const llama_hparams & hp = model.hparams;
    if (llama_model_is_recurrent(&model) || llama_model_is_hybrid(&model) || hp.swa_type != LLAMA_SWA_TYPE_NONE) {
        throw std::runtime_error(
            "KVzap supports models with standard attention only (this one has recurrent or sliding-window layers)");
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

int64_t kvzap_default_budget() {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) return (int64_t)pages * page / 4;
#endif
    return (int64_t)4 << 30; // unknown: 4 GiB
}

namespace {

// The CUDA device index of dev when every layer of the model is on it and its backend runs GGML_OP_KVZAP_ATTN for
// these shapes and types; -1 otherwise (the pool then stays in host memory and the CPU kernel serves it).
int kvzap_pool_device(const llama_model & model, const llama_hparams & hp, ggml_type tk, ggml_type tv) {
    ggml_backend_dev_t dev = model.dev_layer(0);
    if (dev == nullptr || ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_GPU) return -1;
    for (uint32_t il = 1; il < hp.n_layer(); il++) {
        if (model.dev_layer(il) != dev) return -1;
    }
    ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
    if (reg == nullptr || strcmp(ggml_backend_reg_name(reg), "CUDA") != 0) return -1;
    if (ggml_backend_reg_get_proc_address(reg, "ggml_backend_cuda_buffer_from_ptr") == nullptr) return -1;
    int index = -1;
    for (size_t i = 0; i < ggml_backend_reg_dev_count(reg); i++) {
        if (ggml_backend_reg_dev_get(reg, i) == dev) index = (int)i;
    }
    if (index < 0) return -1;
    // the op as the graph builds it, on tensors without data: does this device's backend take it?
    ggml_init_params ip = { 16 * ggml_tensor_overhead(), nullptr, true };
    ggml_context * ctx  = ggml_init(ip);
    if (!ctx) return -1;
    const int64_t dk = hp.n_embd_head_k(0), dv = hp.n_embd_head_v(0), H = hp.n_head_kv(0), Hq = hp.n_head(0);
    ggml_tensor * q   = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, dk, Hq, 1);
    ggml_tensor * k   = ggml_new_tensor_2d(ctx, tk, dk, 64);
    ggml_tensor * v   = ggml_new_tensor_2d(ctx, tv, dv, 64);
    ggml_tensor * bt  = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, 1, H);
    ggml_tensor * no  = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, H);
    ggml_tensor * pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, 1);
    ggml_tensor * op  = ggml_kvzap_attn(ctx, q, k, v, bt, no, pos, 1.0f, 16);
    const bool ok     = ggml_backend_dev_supports_op(dev, op);
    ggml_free(ctx);
    return ok ? index : -1;
}

} // namespace

llama_kvzap_memory::llama_kvzap_memory(const llama_model & model, const llama_cparams & cparams,
                                       std::shared_ptr<const kvzap_params> p) :
    params(std::move(p)), model(model), hparams(model.hparams) {
    check_model(model);
    const char * phases = getenv("KVZAP_HOST_PHASES");
    phases_on           = phases && *phases && strcmp(phases, "0") != 0;
    const char * ahead  = getenv("KVZAP_DECIDE_AHEAD"); // 0: every decision waits for the next ubatch (an A/B)
    decide_ahead_on     = !ahead || strcmp(ahead, "0") != 0;
    if (params->oracle) {
        auto q            = std::make_shared<kvzap_params>(*params);
        q->reference      = true;
        q->capture_hidden = true;
        q->tau            = -INFINITY;
        q->policy         = KVZAP_POLICY_KVZAP;
        params            = q;
    }
    const kvzap_params & P = *params;
    n_layer                = (int32_t)hparams.n_layer();
    n_head_kv              = (int32_t)hparams.n_head_kv(0);
    n_embd                 = (int32_t)hparams.n_embd;
    dk                     = (int32_t)hparams.n_embd_head_k(0);
    dv                     = (int32_t)hparams.n_embd_head_v(0);
    n_ctx                  = (int32_t)cparams.n_ctx_seq;
    n_threads              = std::max(1, (int)cparams.n_threads_batch);
    block_size             = std::max(1, P.block_size);
    // the undecided positions: the window before a ubatch and the ubatch itself
    ring          = P.window + (int32_t)cparams.n_ubatch + 2;
    scores_full   = P.reference || P.capture_hidden;
    tau_effective = P.tau;
    if (P.window < 0) throw std::runtime_error("the window must be >= 0");
    if (P.policy == KVZAP_POLICY_KVZAP && !P.reference && !P.oracle && P.surrogate == KVZAP_SURROGATE_NONE) {
        throw std::runtime_error("the kvzap policy needs a surrogate (a profile)");
    }
    if (P.policy == KVZAP_POLICY_SCORES && (int32_t)P.external_scores.size() != n_layer) {
        throw std::runtime_error("the given scores have a different number of layers than the model");
    }
    if (P.surrogate != KVZAP_SURROGATE_NONE) {
        if ((int32_t)P.layers.size() != n_layer)
            throw std::runtime_error("the surrogate has a different number of layers than the model");
        const size_t din = (size_t)n_embd;
        const size_t dh  = P.surrogate == KVZAP_SURROGATE_MLP ? (size_t)P.hidden : (size_t)n_head_kv;
        for (const auto & L : P.layers) {
            bool ok = L.w1.size() == dh * din && L.b1.size() == dh;
            if (P.surrogate == KVZAP_SURROGATE_MLP)
                ok = ok && L.w2.size() == (size_t)n_head_kv * dh && L.b2.size() == (size_t)n_head_kv;
            if (!ok) throw std::runtime_error("the surrogate's weight shapes do not match the model");
        }
    }

    const size_t row_k                 = ggml_row_size(P.type_k, dk);
    const size_t row_v                 = ggml_row_size(P.type_v, dv);
    const int64_t blocks_per_head_full = (n_ctx + block_size - 1) / block_size;
    const int64_t full_blocks          = (int64_t)n_layer * n_head_kv * blocks_per_head_full;
    const int64_t block_bytes          = (int64_t)block_size * (int64_t)(row_k + row_v);
    full_allocation_bytes              = (int64_t)n_ctx * n_layer * n_head_kv * (int64_t)(row_k + row_v);
    int64_t capacity                   = 0;
    // With the whole model on one CUDA device that runs the op, the pool lives in its memory (VRAM).
    pool_device = P.reference ? -1 : kvzap_pool_device(model, hparams, P.type_k, P.type_v);
    if (!P.reference) {
        int64_t budget   = P.budget_bytes > 0 ? P.budget_bytes : kvzap_default_budget();
        size_t vram_free = 0, vram_total = 0;
        if (P.budget_bytes <= 0 && pool_device >= 0 && kvzap_vmem_cuda_mem_info(pool_device, vram_free, vram_total)) {
            // the default is bounded by the device's free memory too, leaving a quarter for the compute buffers
            budget = std::min<int64_t>(budget, (int64_t)(vram_free / 4 * 3));
        }
        capacity = std::min<int64_t>(full_blocks, budget / block_bytes);
        // The window and one ubatch must always fit in every head.
        const int64_t min_blocks =
            (int64_t)n_layer * n_head_kv * ((P.window + (int64_t)cparams.n_ubatch + 2 * block_size - 1) / block_size);
        if (capacity < std::min(min_blocks, full_blocks)) {
            throw std::runtime_error("the KV budget (" + std::to_string(budget) +
                                     " bytes) is smaller than the window and one batch need (" +
                                     std::to_string(std::min(min_blocks, full_blocks) * block_bytes) +
                                     " bytes); raise the budget or lower the batch size");
        }
        std::string err;
        // a region per layer: its blocks stay together in memory (kvzap-pool.h); a layer never holds more than its
        // full cache, nor more than the whole pool
        const int64_t region_cap = std::min<int64_t>(capacity, (int64_t)n_head_kv * blocks_per_head_full);
        if (!pool.init(capacity, n_layer, region_cap, block_size, row_k, row_v, pool_device, err))
            throw std::runtime_error("could not reserve the KVzap pool: " + err);
    }

    // The oracle uses only stock ops (dense reference attention): with every layer on one GPU its memory goes there,
    // and the whole pass runs on it. With the pool on a device, the scores and the surrogate go there as well, so
    // that the surrogate runs inside the graph on the GPU.
    ggml_backend_buffer_type_t buft = ggml_backend_cpu_buffer_type();
    if (pool_device >= 0) buft = ggml_backend_dev_buffer_type(model.dev_layer(0));
    if (P.oracle) {
        ggml_backend_dev_t dev = model.dev_layer(0);
        bool same              = dev != nullptr && ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU;
        for (int32_t il = 1; il < (int32_t)hparams.n_layer() && same; il++) same = model.dev_layer(il) == dev;
        if (same) buft = ggml_backend_dev_buffer_type(dev);
    }
    const int n_tensors = 8 + 4 * n_layer + 4 * n_layer;
    ggml_init_params ip = { (size_t)n_tensors * ggml_tensor_overhead(), nullptr, true };
    ggml_context * ctx  = ggml_init(ip);
    if (!ctx) throw std::runtime_error("failed to create the KVzap ggml context");
    ctxs.emplace_back(ctx, ggml_free);

    const int64_t slots = P.reference ? (int64_t)n_ctx * n_head_kv * n_layer : pool.n_slots();
    k_pool              = ggml_new_tensor_2d(ctx, P.type_k, dk, slots);
    v_pool              = ggml_new_tensor_2d(ctx, P.type_v, dv, slots);
    ggml_format_name(k_pool, "kvzap_k_pool");
    ggml_format_name(v_pool, "kvzap_v_pool");
    if (!P.reference) {
        nb_cap      = (int32_t)std::min<int64_t>(blocks_per_head_full, std::max<int64_t>(1, capacity));
        block_table = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, nb_cap, (int64_t)n_head_kv * n_layer);
        ggml_format_name(block_table, "kvzap_block_table");
    }
    // (only where set_input can write them safely: in host memory, or in the pool's device memory after waiting for
    // it; an oracle on a GPU keeps ordinary graph inputs)
    if (pool_device >= 0 || buft == ggml_backend_cpu_buffer_type()) {
        step_tokens = (int32_t)std::max<uint32_t>(1, cparams.n_ubatch);
        if (!P.reference && !P.oracle)
            step_n_old = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, (int64_t)n_head_kv * n_layer);
        step_pos   = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, step_tokens);
        step_slots = ggml_new_tensor_1d(ctx, GGML_TYPE_I64, (int64_t)n_head_kv * step_tokens * n_layer);
        step_rows  = ggml_new_tensor_1d(ctx, GGML_TYPE_I64, step_tokens);
    }
    const bool need_scores   = P.surrogate != KVZAP_SURROGATE_NONE;
    const int64_t score_rows = scores_full ? n_ctx : ring;
    // The ring of every layer in one tensor, position-major ([n_head_kv, n_layer, ring]): the scores of the positions
    // a ubatch decides come to the host in one copy, not one per layer. Each layer's scores are a strided view of it.
    if (need_scores && !scores_full) {
        scores_all = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, n_head_kv, n_layer, ring);
        ggml_format_name(scores_all, "kvzap_scores");
    }
    for (int32_t il = 0; il < n_layer; il++) {
        ggml_tensor * sc = nullptr;
        if (need_scores) {
            sc = scores_all
                     ? ggml_view_2d(ctx, scores_all, n_head_kv, ring, scores_all->nb[2], (size_t)il * scores_all->nb[1])
                     : ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_head_kv, score_rows);
        }
        scores.push_back(sc);
        hidden.push_back(P.capture_hidden ? ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_embd, n_ctx) : nullptr);
        queries.push_back(P.oracle ? ggml_new_tensor_2d(ctx, GGML_TYPE_F32, (int64_t)dk * hparams.n_head(0), n_ctx)
                                   : nullptr);
        if (need_scores) {
            const int64_t dh = P.surrogate == KVZAP_SURROGATE_MLP ? P.hidden : n_head_kv;
            // (the output bias stays on the host: score_bias)
            sw1.push_back(ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n_embd, dh));
            if (P.surrogate == KVZAP_SURROGATE_MLP) {
                sb1.push_back(ggml_new_tensor_1d(ctx, GGML_TYPE_F32, dh));
                sw2.push_back(ggml_new_tensor_2d(ctx, GGML_TYPE_F32, dh, n_head_kv));
            }
        }
    }
    if (!P.reference) {
        // The pool's tensors sit in the reserved range: only the chunks the blocks in use reach hold memory.
        size_t kb = ggml_nbytes(k_pool), vb = ggml_nbytes(v_pool);
        ggml_backend_buffer_t kbuf = nullptr, vbuf = nullptr;
        if (pool_device >= 0) {
            // as large as the CUDA buffer type says the tensors take (q8_0 rows padded), within the reserved ranges
            ggml_backend_buffer_type_t dev_buft = ggml_backend_dev_buffer_type(model.dev_layer(0));
            kb                                  = std::max(kb, ggml_backend_buft_get_alloc_size(dev_buft, k_pool));
            vb                                  = std::max(vb, ggml_backend_buft_get_alloc_size(dev_buft, v_pool));
            if (kb > pool.k_reserved_bytes() || vb > pool.v_reserved_bytes())
                throw std::runtime_error("the CUDA buffer type pads the KVzap pool past its reserved range");
            // non-owning CUDA buffers over the reserved device range (patch 0003); never cleared (that would commit it
            // all)
            using from_ptr_t = ggml_backend_buffer_t (*)(int, void *, size_t);
            auto from_ptr    = (from_ptr_t)ggml_backend_reg_get_proc_address(
                   ggml_backend_dev_backend_reg(model.dev_layer(0)), "ggml_backend_cuda_buffer_from_ptr");
            kbuf = from_ptr(pool_device, pool.k_base(), kb);
            vbuf = from_ptr(pool_device, pool.v_base(), vb);
        } else {
            kbuf = ggml_backend_cpu_buffer_from_ptr(pool.k_base(), kb);
            vbuf = ggml_backend_cpu_buffer_from_ptr(pool.v_base(), vb);
        }
        if (!kbuf || !vbuf) throw std::runtime_error("failed to wrap the KVzap pool in ggml buffers");
        if (pool_device >= 0) {
            // Only the device pool: a host buffer marked WEIGHTS lets the scheduler offload the ops that read it to a
            // GPU, copying the whole reserved range (uncommitted: a segfault, seen with --gpu-layers 0 in a CUDA build)
            ggml_backend_buffer_set_usage(kbuf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
            ggml_backend_buffer_set_usage(vbuf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        }
        bufs.emplace_back(kbuf);
        bufs.emplace_back(vbuf);
        if (ggml_backend_tensor_alloc(kbuf, k_pool, pool.k_base()) != GGML_STATUS_SUCCESS ||
            ggml_backend_tensor_alloc(vbuf, v_pool, pool.v_base()) != GGML_STATUS_SUCCESS) {
            throw std::runtime_error("failed to place the KVzap pool tensors");
        }
    }
    // The rest (dense reference storage, scores, captures, surrogate weights) is one ordinary buffer.
    bool unplaced = false;
    for (ggml_tensor * t = ggml_get_first_tensor(ctx); t; t = ggml_get_next_tensor(ctx, t))
        unplaced = unplaced || t->data == nullptr;
    if (unplaced) {
        ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors_from_buft(ctx, buft);
        if (!buf &&
            buft != ggml_backend_cpu_buffer_type()) { // the oracle's memory did not fit the GPU: host memory then
            buf = ggml_backend_alloc_ctx_tensors_from_buft(ctx, ggml_backend_cpu_buffer_type());
        }
        if (!buf)
            throw std::runtime_error("failed to allocate the KVzap tensors (" + std::to_string(slots) + " slots)");
        // WEIGHTS keeps the ops that read these tensors on their device. Not in host memory: in a CUDA build with the
        // layers on the CPU, the scheduler offloads big-batch ops that read host WEIGHTS to the GPU, and the attention
        // op reads the block table from here: it would copy the host pool's whole reserved (uncommitted) range.
        if (!ggml_backend_buffer_is_host(buf)) ggml_backend_buffer_set_usage(buf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
        // dense storage is read by position before it is written (masked out); everything else is written before read
        if (P.reference) ggml_backend_buffer_clear(buf, 0);
        bufs.emplace_back(buf);
    }
    if (need_scores) score_bias.assign((size_t)n_layer * n_head_kv, 0.0f);
    for (int32_t il = 0; il < n_layer && need_scores; il++) {
        const auto & L   = P.layers[il];
        const bool mlp   = P.surrogate == KVZAP_SURROGATE_MLP;
        const auto & out = mlp ? L.b2 : L.b1;
        if (out.size() != (size_t)n_head_kv)
            throw std::runtime_error("the surrogate's output bias is not one per KV head");
        std::copy(out.begin(), out.end(), score_bias.begin() + (size_t)il * n_head_kv);
        ggml_backend_tensor_set(sw1[il], L.w1.data(), 0, L.w1.size() * sizeof(float));
        if (mlp) {
            ggml_backend_tensor_set(sb1[il], L.b1.data(), 0, L.b1.size() * sizeof(float));
            ggml_backend_tensor_set(sw2[il], L.w2.data(), 0, L.w2.size() * sizeof(float));
        }
    }
    heads.assign((size_t)n_layer * n_head_kv, kvzap_head());
    if (P.policy == KVZAP_POLICY_RANDOM) { // decision_score's caches, made before any decision pass's threads start
        random_group.assign(heads.size(), -1);
        random_scores.assign(heads.size() * 64, 0.0f);
    }
    win.assign((size_t)n_layer * n_head_kv, std::vector<int32_t>(ring, -1));
    clear(false);
    LLAMA_LOG_INFO(
        "%s: KVzap memory: %s, tau = %.3f, window = %d, n_ctx = %d, pool of %lld blocks of %d reserved (%.2f MiB, none "
        "committed) in %s memory, %s/%s\n",
        __func__, P.reference ? "reference" : kvzap_policy_name(P.policy), P.tau, P.window, n_ctx, (long long)capacity,
        block_size, pool.reserved_bytes() / 1048576.0, pool_device >= 0 ? "CUDA device" : "host",
        ggml_type_name(P.type_k), ggml_type_name(P.type_v));
}

void llama_kvzap_memory::refuse(const char * op) const {
    throw std::logic_error(std::string("the KVzap memory holds one sequence and cannot ") + op +
                           " (copy, keep, shift or divide positions); use seq_rm or clear");
}

void llama_kvzap_memory::clear(bool /*data*/) {
    for (auto & hd : heads) {
        hd = kvzap_head();
    }
    for (auto & w : win) std::fill(w.begin(), w.end(), -1);
    protected_pos.clear();
    protected_pos.shrink_to_fit();
    if (!params->reference) pool.reset();
    score_host_lo = score_host_hi = 0;
    n_pos                         = 0;
    win_start                     = 0;
    running_q0                    = 0;
    tau_effective                 = params->tau;
    n_evicted                     = 0;
    n_budget_evicted              = 0;
    host_ms                       = 0;
    phase_ms.fill(0.0);
    last_error.clear();
    publish();
}

llama_pos llama_kvzap_memory::seq_pos_min(llama_seq_id seq_id) const {
    return (seq_id == 0 || seq_id == -1) && n_pos > 0 ? 0 : -1;
}

llama_pos llama_kvzap_memory::seq_pos_max(llama_seq_id seq_id) const {
    return (seq_id == 0 || seq_id == -1) ? n_pos - 1 : -1;
}

bool llama_kvzap_memory::keep(int32_t il, int32_t h, int32_t p, float s) const {
    return protected_at(p) || kvzap_policy_keep(*params, il, h, p, s);
}

// score_at for the decisions, which go through positions in order: the random policy's scores come 64 at a time per
// head (one group's hashes, ranked once) instead of 64 hashes for every pair.
float llama_kvzap_memory::decision_score(int32_t il, int32_t h, int32_t p) {
    if (params->policy != KVZAP_POLICY_RANDOM) return score_at(il, h, p);
    const size_t g   = (size_t)il * n_head_kv + h;
    const int32_t g0 = p - p % 64;
    if (random_group[g] != g0) {
        kvzap_policy_group_scores(*params, il, h, g0, random_scores.data() + g * 64);
        random_group[g] = g0;
    }
    return random_scores[g * 64 + (size_t)(p - g0)];
}

float llama_kvzap_memory::score_at(int32_t il, int32_t h, int32_t p) const {
    if (params->policy == KVZAP_POLICY_RANDOM || params->policy == KVZAP_POLICY_SCORES)
        return kvzap_policy_score(*params, il, h, p, n_head_kv);
    if (!scores[il]) return -std::numeric_limits<float>::infinity();
    float s; // the row holds the score less its bias
    const size_t off = (size_t)score_row(p) * scores[il]->nb[1] + (size_t)h * sizeof(float);
    if (ggml_backend_buffer_is_host(scores[il]->buffer)) {
        s = *(const float *)((const char *)scores[il]->data + off);
    } else if (p >= score_host_lo && p < score_host_hi) {
        // fetch_scores' copy: every layer's ring (this layer's rows at the view's offset), or this layer's
        s = score_host[scores_all ? 0 : il][(scores[il]->view_offs + off) / sizeof(float)];
    } else {
        ggml_backend_tensor_get(scores[il], &s, off, sizeof(float));
    }
    return biased(il, h, s);
}

void llama_kvzap_memory::fetch_scores(int32_t lo, int32_t hi, bool beside) {
    score_host_lo = score_host_hi = 0;
    if (hi <= lo || scores.empty() || !scores[0] || ggml_backend_buffer_is_host(scores[0]->buffer)) return;
    beside = beside && pool_device >= 0;
    if (pool_device >= 0 && !beside) { // the graph that wrote them may still run
        kvzap_host_timer wait(phase(KVZAP_PHASE_WAIT));
        kvzap_vmem_cuda_sync(pool_device);
    }
    // One copy per run of consecutive ring rows (the ring wraps at most once in a pass): of every layer at once when
    // the rings share one tensor (a row then holds all layers), else layer by layer. The host copy is laid out as the
    // tensor it came from.
    const std::vector<ggml_tensor *> from = scores_all ? std::vector<ggml_tensor *>{ scores_all } : scores;
    const size_t row                      = scores_all ? scores_all->nb[2] : scores[0]->nb[1];
    score_host.resize(from.size());
    for (size_t i = 0; i < from.size(); i++) {
        score_host[i].resize(ggml_nbytes(from[i]) / sizeof(float));
        for (int32_t p = lo; p < hi;) {
            const int32_t r0 = score_row(p);
            int32_t q        = p + 1;
            while (q < hi && score_row(q) == r0 + (q - p)) q++;
            float * dst        = score_host[i].data() + (size_t)r0 * row / sizeof(float);
            const size_t bytes = (size_t)(q - p) * row;
            std::string err;
            if (!beside || !kvzap_vmem_cuda_read_beside(pool_device, dst,
                                                        (const char *)from[i]->data + (size_t)r0 * row, bytes, err)) {
                if (beside) { // a failed side read: through ggml, after the graph
                    LLAMA_LOG_WARN("%s: %s\n", __func__, err.c_str());
                    kvzap_vmem_cuda_sync(pool_device);
                    beside = false;
                }
                ggml_backend_tensor_get(from[i], dst, (size_t)r0 * row, bytes);
            }
            p = q;
        }
    }
    score_host_lo = lo;
    score_host_hi = hi;
}

// Gives head (il, h) the blocks that n_entries entries fill, each the lowest free block at its turn; on failure the
// head keeps the blocks it had and no more.
bool llama_kvzap_memory::grow_blocks(int32_t il, int32_t h, int32_t n_entries) {
    kvzap_head & hd    = head(il, h);
    const int32_t need = (n_entries + block_size - 1) / block_size;
    const size_t had   = hd.blocks.size();
    while ((int32_t)hd.blocks.size() < need) {
        const int32_t b = pool.alloc(il, il * n_head_kv + h, (int32_t)hd.blocks.size());
        if (b < 0) {
            while (hd.blocks.size() > had) {
                pool.release(hd.blocks.back());
                hd.blocks.pop_back();
            }
            return false;
        }
        hd.blocks.push_back(b);
        hd.bt_dirty = std::min<int32_t>(hd.bt_dirty, (int32_t)hd.blocks.size() - 1);
    }
    return true;
}

// Appends position p to head (il, h), taking the lowest free block when the list's last block is full.
bool llama_kvzap_memory::push_entry(int32_t il, int32_t h, int32_t p, float s) {
    kvzap_head & hd = head(il, h);
    if (!grow_blocks(il, h, hd.len + 1)) return false;
    hd.len++;
    hd.pos.push_back(p);
    hd.score.push_back(s);
    return true;
}

// Appends positions q0 .. q0 + n - 1 to head (il, h), undecided, as push_entry one at a time would (the same blocks,
// taken in the same order), and points their ring slots at them; on failure the head is as it was.
bool llama_kvzap_memory::append_entries(int32_t il, int32_t h, int32_t q0, int32_t n) {
    kvzap_head & hd    = head(il, h);
    const int32_t len0 = hd.len;
    if (!grow_blocks(il, h, len0 + n)) return false;
    hd.pos.resize((size_t)len0 + n);
    std::iota(hd.pos.begin() + len0, hd.pos.end(), q0);
    hd.score.resize((size_t)len0 + n, NAN);
    hd.len                   = len0 + n;
    std::vector<int32_t> & w = win[(size_t)il * n_head_kv + h];
    for (int32_t t = 0, r = q0 % ring; t < n; t++, r = r + 1 == ring ? 0 : r + 1) w[r] = len0 + t;
    return true;
}

// Removes list entry idx of head (il, h): the last entry takes its place (its rows move), and a block left empty at
// the end of the list goes back to the pool. Window entries (positions >= win_lo) keep their ring slot current.
void llama_kvzap_memory::remove_entry(int32_t il, int32_t h, int32_t idx, int32_t win_lo, removal_sink * sink) {
    kvzap_head & hd    = head(il, h);
    const int32_t last = hd.len - 1;
    if (idx != last) {
        if (sink) {
            sink->moves.push_back({ slot(hd, last), slot(hd, idx) });
        } else {
            pool.copy_rows(slot(hd, idx), slot(hd, last), 1);
        }
        hd.pos[idx]     = hd.pos[last];
        hd.score[idx]   = hd.score[last];
        const int32_t p = hd.pos[idx];
        if (p >= win_lo) {
            win[(size_t)il * n_head_kv + h][p % ring] = idx;
        }
    }
    hd.len--;
    hd.pos.pop_back();
    hd.score.pop_back();
    if (hd.len % block_size == 0) {
        if (sink) {
            sink->released.push_back(hd.blocks.back());
        } else {
            pool.release(hd.blocks.back());
        }
        hd.blocks.pop_back();
    }
}

// Keeps the committed memory near the blocks in use: moves the highest blocks into holes and gives back the tail.
void llama_kvzap_memory::compact() {
    if (params->reference) return;
    kvzap_host_timer timer(phase(KVZAP_PHASE_COMPACT));
    pool.compact([this](int32_t list, int32_t idx, int32_t dst) {
        heads[list].blocks[idx] = dst;
        heads[list].bt_dirty    = std::min(heads[list].bt_dirty, idx);
    });
    if (!pool.flush()) LLAMA_LOG_ERROR("%s: %s\n", __func__, pool.err().c_str());
}

// Frees at least need_blocks blocks (and some headroom, so that this stays rare) by removing the lowest-scoring
// pairs outside the window, over all layers and heads: the threshold is effectively raised. Protected pairs are
// never candidates.
bool llama_kvzap_memory::enforce_budget(int64_t need_blocks) {
    std::vector<kvzap_budget_cand> cands;
    std::vector<int32_t> lens(heads.size());
    for (size_t i = 0; i < heads.size(); i++) {
        const kvzap_head & hd = heads[i];
        lens[i]               = hd.len;
        for (int32_t j = 0; j < hd.len; j++) {
            if (hd.pos[j] < win_start && !protected_at(hd.pos[j]))
                cands.push_back({ hd.score[j], (int32_t)i, hd.pos[j] });
        }
    }
    const int64_t headroom = std::max<int64_t>(pool.capacity() / 32, (int64_t)n_layer * n_head_kv);
    int64_t freed          = 0;
    const size_t n_take = kvzap_budget_choose(cands, lens, block_size, pool.n_free(), need_blocks + headroom, &freed);
    if (freed < need_blocks) return false;
    if (n_take > 0) {
        tau_effective =
            std::max(tau_effective, std::nextafter(cands[n_take - 1].s, std::numeric_limits<float>::infinity()));
    }
    // Remove the chosen pairs head by head, following entries as removals move them.
    std::vector<std::vector<int32_t>> victims(heads.size());
    for (size_t i = 0; i < n_take; i++) victims[cands[i].head].push_back(cands[i].p);
    for (int32_t il = 0; il < n_layer; il++) {
        for (int32_t h = 0; h < n_head_kv; h++) {
            auto & vs = victims[(size_t)il * n_head_kv + h];
            if (vs.empty()) continue;
            kvzap_head & hd = head(il, h);
            std::unordered_map<int32_t, int32_t> idx_of;
            for (int32_t i = 0; i < hd.len; i++) idx_of[hd.pos[i]] = i;
            for (int32_t p : vs) {
                const int32_t idx       = idx_of[p];
                const int32_t last      = hd.len - 1;
                const int32_t moved_pos = hd.pos[last];
                remove_entry(il, h, idx);
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
// Head by head, each in position order: a head's list changes only by its own removals, so the lists and the
// decisions come out as they would position by position over all heads, with one head's data at a time in cache. A
// pass of many decisions (a ubatch's) goes to threads, each a run of heads; their row moves and emptied blocks then go
// to the pool in head order, as one thread would have made them, so the pool ends as it would on one thread.
void llama_kvzap_memory::evict_until(int32_t boundary, bool beside) {
    kvzap_host_timer timer(phase(KVZAP_PHASE_EVICT));
    boundary         = std::min(boundary, n_pos);
    const int32_t lo = win_start;
    fetch_scores(lo, boundary, beside);
    if (boundary <= lo) return;
    const int32_t n_heads = (int32_t)heads.size();
    const int64_t work    = (int64_t)(boundary - lo) * n_heads;
    // a thread for fewer than 8192 decisions (a few hundred microseconds) costs more than it saves
    const int nt = (int)std::min<int64_t>({ (int64_t)n_threads, (int64_t)n_heads, work / 8192 });
    if (nt <= 1) {
        n_evicted += decide_heads(0, n_heads, lo, boundary, nullptr);
    } else {
        if ((int)sinks.size() < nt) sinks.resize(nt);
        kvzap_run_threads(nt, [&](int t) {
            removal_sink & s = sinks[t];
            s.moves.clear();
            s.released.clear();
            s.n_removed = decide_heads((int32_t)((int64_t)n_heads * t / nt), (int32_t)((int64_t)n_heads * (t + 1) / nt),
                                       lo, boundary, &s);
        });
        for (int t = 0; t < nt; t++) {
            const removal_sink & s = sinks[t];
            for (const kvzap_row_move & m : s.moves) pool.copy_rows(m.dst, m.src, 1);
            for (const int32_t b : s.released) pool.release(b);
            n_evicted += s.n_removed;
        }
    }
    win_start = boundary;
}

int64_t llama_kvzap_memory::decide_heads(int32_t h0, int32_t h1, int32_t lo, int32_t hi, removal_sink * sink) {
    int64_t removed = 0;
    for (int32_t g = h0; g < h1; g++) {
        const int32_t il         = g / n_head_kv;
        const int32_t h          = g % n_head_kv;
        std::vector<int32_t> & w = win[(size_t)g];
        for (int32_t p = lo; p < hi; p++) {
            int32_t & slot_ref = w[p % ring];
            const int32_t idx  = slot_ref;
            slot_ref           = -1;
            if (idx < 0) continue;
            const float s = decision_score(il, h, p);
            if (keep(il, h, p, s)) {
                head(il, h).score[idx] = s;
            } else {
                // this head's entries at positions <= p are no longer window entries
                remove_entry(il, h, idx, p + 1, sink);
                removed++;
            }
        }
    }
    return removed;
}

// Called by the memory context once the graph of the ubatch last prepared is queued (llama's decode calls next() right
// after): the decisions that the next ubatch, or settle, would take first, made while the device computes this one,
// for the positions before this ubatch. Their scores come from graphs that have finished (set_input waited for the
// last one) and lie in ring rows this graph does not write (the ring holds window + n_ubatch + 2 positions), so they
// are read beside it; the ubatch's own scores wait for it, in the next pass. The row moves and emptied blocks wait in
// the pool for its next flush, which waits for the device. The lists come out as they would: the same decisions, in
// the same order, only earlier.
void llama_kvzap_memory::decide_ahead() {
    if (params->reference || params->oracle || !decide_ahead_on) return;
    kvzap_host_timer timer(&host_ms);
    evict_until(std::min(n_pos - params->window, running_q0), true);
}

// After a batch: the next query will be at n_pos, so what is older than the window now can go already (the same
// decisions the next batch would take first), and the memory in use is what it will be.
void llama_kvzap_memory::settle() {
    {
        kvzap_host_timer timer(&host_ms);
        evict_until(n_pos - params->window);
        if (!params->reference) pool.set_bulk(false); // the batch is placed: the regions' last chunks go to the spill
        compact();
    }
    publish(); // the statistics, and the phases below, with this settle's time
    if (phases_on) {
        const auto & t = phase_ms;
        fprintf(
            stderr,
            "kvzap host phases, ms since clear: evict %.1f (waiting for the device %.1f), append %.1f, compact %.1f, "
            "table %.1f, inputs %.1f; all host work %.1f\n",
            t[KVZAP_PHASE_EVICT], t[KVZAP_PHASE_WAIT], t[KVZAP_PHASE_APPEND], t[KVZAP_PHASE_COMPACT],
            t[KVZAP_PHASE_TABLE], t[KVZAP_PHASE_INPUT], host_ms);
    }
}

void llama_kvzap_memory::set_evicting(bool on) {
    if (!on && evicting) {
        // what the window holds now (the prompt's tail, the question) stays, as if the prompt had ended here
        for (int32_t p = std::max({ 0, win_start, n_pos - params->window }); p < n_pos; p++) protected_pos[p] = 1;
    }
    evicting = on;
}

// Blocks that the pairs at or after q0 - window, the protected pairs and n_new more need, with every other pair
// dropped.
int64_t llama_kvzap_memory::must_keep_blocks(int32_t q0, int32_t n_new) const {
    const int32_t lo = q0 - params->window;
    int64_t blocks   = 0;
    if (lo >= win_start) {
        // Every head holds every position from win_start on (window pairs are never dropped) and every protected
        // pair (never dropped either): the count is the same for all heads, without reading their lists (this runs
        // for every ubatch, and a list walk costs a few ms a decode step at 100k tokens over 256 heads).
        const int32_t from = std::max(lo, 0);
        const int64_t n =
            (int64_t)n_new + std::max(0, n_pos - from) +
            std::count(protected_pos.begin(), protected_pos.begin() + std::min<size_t>(from, protected_pos.size()), 1);
        return (int64_t)heads.size() * ((n + block_size - 1) / block_size);
    }
    for (const auto & hd : heads) {
        int64_t n = n_new;
        for (int32_t j = 0; j < hd.len; j++) n += hd.pos[j] >= lo || protected_at(hd.pos[j]);
        blocks += (n + block_size - 1) / block_size;
    }
    return blocks;
}

bool llama_kvzap_memory::check_positions(const std::vector<llama_ubatch> & ubatches) {
    int32_t next = n_pos;
    for (const auto & ub : ubatches) {
        const int32_t T = (int32_t)ub.n_tokens;
        for (int32_t t = 0; t < T; t++) {
            if (ub.pos[t] != ub.pos[0] + t || ub.seq_id[t][0] != 0 || ub.n_seq_id[t] != 1) {
                last_error = "KVzap holds one sequence of consecutive positions";
                return false;
            }
        }
        if (ub.pos[0] != next) {
            last_error = "KVzap expects position " + std::to_string(next) + ", got " + std::to_string(ub.pos[0]);
            return false;
        }
        next += T;
        if (next > n_ctx) {
            last_error = "the context is full (" + std::to_string(n_ctx) + " positions)";
            return false;
        }
    }
    return true;
}

bool llama_kvzap_memory::check_ubatches(const std::vector<llama_ubatch> & ubatches) {
    if (!check_positions(ubatches)) return false;
    // Pairs of this batch's own earlier ubatches are not scored yet: they count as kept unless they leave the
    // window, when the budget may drop them (unprotected) like any other pair outside it.
    int32_t q0 = n_pos;
    for (const auto & ub : ubatches) {
        const int32_t T  = (int32_t)ub.n_tokens;
        const int32_t lo = q0 - params->window;
        const int32_t pending =
            evicting ? std::max(0, q0 - std::max(lo, n_pos)) : q0 - n_pos; // earlier ubatches' pairs that stay
        const int64_t need = must_keep_blocks(q0, T + pending);
        if (need > pool.capacity()) {
            last_error =
                "the KV budget cannot hold this batch: the window, the protected pairs and the new tokens need " +
                std::to_string(need * (int64_t)pool.block_bytes()) + " bytes, the budget allows " +
                std::to_string(pool.capacity() * (int64_t)pool.block_bytes()) +
                (evicting ? "; raise --kv-budget or shorten the window"
                          : "; raise --kv-budget, or let generated tokens be evicted");
            return false;
        }
        q0 += T;
    }
    return true;
}

// The plan's per-token parts, and the new positions' protection; false for a ubatch that init_batch did not check.
bool llama_kvzap_memory::begin_plan(const llama_ubatch & ub, kvzap_ubatch_plan & plan) {
    const int32_t T  = (int32_t)ub.n_tokens;
    const int32_t q0 = ub.pos[0];
    if (q0 != n_pos || q0 + T > n_ctx) {
        last_error = "internal: a ubatch that init_batch did not check";
        return false;
    }
    plan.n_tokens = T;
    plan.q0       = q0;
    plan.pos.resize(T);
    plan.score_rows.resize(T);
    for (int32_t t = 0; t < T; t++) {
        plan.pos[t]        = q0 + t;
        plan.score_rows[t] = score_row(q0 + t);
    }
    plan.new_slots.assign((size_t)n_layer * T * n_head_kv, 0);
    plan.n_old.assign((size_t)n_layer * n_head_kv, 0);
    protected_pos.resize((size_t)q0 + T, evicting ? 0 : 1);

    return true;
}

bool llama_kvzap_memory::prepare_ubatch(const llama_ubatch & ub, kvzap_ubatch_plan & plan) {
    kvzap_host_timer timer(&host_ms);
    const kvzap_params & P = *params;
    if (!begin_plan(ub, plan)) return false;
    const int32_t T  = (int32_t)ub.n_tokens;
    const int32_t q0 = ub.pos[0];
    running_q0       = q0;

    // 1. pairs that leave the window: kept only where the rule says so (decide_ahead may have made these already)
    evict_until(q0 - P.window);

    // 2. room for the new pairs
    int64_t need = 0;
    for (const auto & hd : heads) {
        need += (hd.len + T + block_size - 1) / block_size - (hd.len + block_size - 1) / block_size;
    }
    if (need > pool.n_free() && !enforce_budget(need)) {
        last_error = "internal: the budget could not make the room init_batch found";
        return false;
    }

    // 3. the ubatch's pairs go at the end of every head's list, into the lowest free blocks (the holes first); a
    // batch of many tokens into the regions' own memory (kvzap_block_pool::set_bulk)
    if (!params->reference) pool.set_bulk(T > 1);
    {
        kvzap_host_timer append(phase(KVZAP_PHASE_APPEND));
        for (int32_t il = 0; il < n_layer; il++) {
            for (int32_t h = 0; h < n_head_kv; h++) {
                plan.n_old[(size_t)il * n_head_kv + h] = head(il, h).len;
                if (!append_entries(il, h, q0, T)) {
                    last_error = "could not commit memory for the KV pool: " + pool.err();
                    return false;
                }
            }
        }
    }
    // 4. what holes remain are closed from the top, then the slots and the block table are read off the lists
    compact();
    kvzap_host_timer table(phase(KVZAP_PHASE_TABLE));
    int32_t nb_max = 1;
    for (int32_t il = 0; il < n_layer; il++) {
        for (int32_t h = 0; h < n_head_kv; h++) {
            const kvzap_head & hd = head(il, h);
            const int32_t n_old   = plan.n_old[(size_t)il * n_head_kv + h];
            for (int32_t t = 0; t < T; t++) plan.new_slots[((size_t)il * T + t) * n_head_kv + h] = slot(hd, n_old + t);
            nb_max = std::max<int32_t>(nb_max, (int32_t)hd.blocks.size());
        }
    }
    // the persistent table is read as wide as the longest list, rounded up to 32 blocks: the graph (built for one
    // width) then serves 32 more blocks of the longest list, not one (can_reuse)
    if (block_table) nb_max = std::min<int32_t>(nb_cap, (nb_max + 31) / 32 * 32);
    plan.nb_max = nb_max;
    if (block_table) {
        plan.block_table.clear();
        if (!sync_block_table()) return false;
    } else {
        plan.block_table.assign((size_t)n_layer * n_head_kv * nb_max, 0);
        for (int32_t il = 0; il < n_layer; il++) {
            for (int32_t h = 0; h < n_head_kv; h++) {
                const kvzap_head & hd = head(il, h);
                std::copy(hd.blocks.begin(), hd.blocks.end(),
                          plan.block_table.begin() + ((size_t)il * n_head_kv + h) * nb_max);
            }
        }
    }
    n_pos = q0 + T;
    publish();
    return true;
}

// Writes the block ids that changed since the last sync into the persistent table: on a device pool one small upload
// and one scatter kernel, on a host pool in place. A decode step typically changes none or one id per head.
bool llama_kvzap_memory::sync_block_table() {
    bt_delta.clear();
    for (size_t g = 0; g < heads.size(); g++) {
        kvzap_head & hd = heads[g];
        for (int32_t i = hd.bt_dirty; i < (int32_t)hd.blocks.size(); i++) {
            bt_delta.push_back((int32_t)(g * (size_t)nb_cap + (size_t)i));
            bt_delta.push_back(hd.blocks[i]);
        }
        hd.bt_dirty = INT32_MAX;
    }
    const size_t n = bt_delta.size() / 2;
    if (n == 0) return true;
    if (ggml_backend_buffer_is_host(block_table->buffer)) {
        int32_t * t = (int32_t *)block_table->data;
        for (size_t i = 0; i < n; i++) t[bt_delta[2 * i]] = bt_delta[2 * i + 1];
        return true;
    }
    std::string err;
    if (!kvzap_vmem_cuda_scatter_i32(pool_device, block_table->data, bt_delta.data(), n, err)) {
        last_error = err;
        return false;
    }
    return true;
}

void llama_kvzap_memory::plan_worst_case(uint32_t n_tokens, kvzap_ubatch_plan & plan) const {
    const int32_t T = (int32_t)n_tokens;
    plan.n_tokens   = T;
    plan.q0         = 0;
    plan.pos.assign(T, 0);
    plan.score_rows.assign(T, 0);
    plan.new_slots.assign((size_t)n_layer * T * n_head_kv, 0);
    plan.n_old.assign((size_t)n_layer * n_head_kv, 0);
    // the longest list a head can have: n_ctx positions, or the whole pool in one head
    const int64_t per_head =
        std::min<int64_t>((n_ctx + block_size - 1) / block_size, std::max<int64_t>(1, pool.capacity()));
    plan.nb_max = params->reference ? 1 : (int32_t)per_head;
    plan.block_table.assign((size_t)n_layer * n_head_kv * plan.nb_max, 0);
    plan.n_kv_ref = n_ctx;
}

bool llama_kvzap_memory::seq_rm(llama_seq_id seq_id, llama_pos p0, llama_pos p1) {
    if (seq_id > 0) return false;
    if (p0 < 0) p0 = 0;
    if (p1 >= 0 && p1 < n_pos) return false; // only a suffix can go: the rest shaped what was kept
    if (p0 == 0) {
        clear(true);
        return true;
    }
    if (p0 >= n_pos) return true;
    // The next query (at p0) sees every pair of [p0 - window, p0). Those below win_start were decided for queries
    // past p0 and may be gone; the memory then cannot continue from p0 as a fresh one would, and says so.
    const int32_t lo = std::max(0, p0 - params->window);
    if (lo < win_start) {
        int64_t held = 0;
        for (const auto & hd : heads) {
            for (int32_t j = 0; j < hd.len; j++) held += hd.pos[j] >= lo && hd.pos[j] < win_start;
        }
        if (held != (int64_t)(win_start - lo) * (int64_t)heads.size()) return false;
    }
    for (int32_t il = 0; il < n_layer; il++) {
        for (int32_t h = 0; h < n_head_kv; h++) {
            kvzap_head & hd = head(il, h);
            for (int32_t idx = hd.len - 1; idx >= 0; idx--) {
                if (hd.pos[idx] >= p0) remove_entry(il, h, idx);
            }
            auto & w = win[(size_t)il * n_head_kv + h];
            for (int32_t p = std::max(p0, n_pos - ring); p < n_pos; p++) w[p % ring] = -1;
            // the positions [lo, win_start) were all kept: they are window entries again
            for (int32_t idx = 0; idx < hd.len; idx++) {
                if (hd.pos[idx] >= lo && hd.pos[idx] < win_start) w[hd.pos[idx] % ring] = idx;
            }
        }
    }
    protected_pos.resize(p0);
    n_pos     = p0;
    win_start = std::min(win_start, lo);
    if (!params->reference) pool.set_bulk(false);
    compact();
    publish();
    return true;
}

std::map<ggml_backend_buffer_type_t, size_t> llama_kvzap_memory::memory_breakdown() const {
    std::map<ggml_backend_buffer_type_t, size_t> out;
    // the pool's buffers span the reserved range: count what is committed
    for (size_t i = params->reference ? 0 : 2; i < bufs.size(); i++)
        out[ggml_backend_buffer_get_type(bufs[i].get())] += ggml_backend_buffer_get_size(bufs[i].get());
    if (!params->reference)
        out[ggml_backend_buffer_get_type(bufs[0].get())] += (size_t)stats().pool_bytes; // any thread may ask
    return out;
}

void llama_kvzap_memory::publish() {
    kvzap_stats s = compute_stats();
    std::lock_guard<std::mutex> lock(stats_mutex);
    snapshot = std::move(s);
}

kvzap_stats llama_kvzap_memory::stats() const {
    std::lock_guard<std::mutex> lock(stats_mutex);
    return snapshot;
}

kvzap_stats llama_kvzap_memory::compute_stats() const {
    kvzap_stats s;
    s.active                = true;
    s.policy                = params->policy;
    s.tau                   = params->tau;
    s.tau_effective         = tau_effective;
    s.window                = params->window;
    s.block_size            = block_size;
    const int64_t row_bytes = (int64_t)(ggml_row_size(params->type_k, dk) + ggml_row_size(params->type_v, dv));
    s.block_bytes           = row_bytes * block_size;
    s.pool_blocks           = params->reference ? 0 : pool.capacity();
    s.pool_device           = pool_device;
    s.high_water_blocks     = params->reference ? 0 : pool.high_water();
    s.tokens                = n_pos;
    s.evicted               = n_evicted;
    s.budget_evicted        = n_budget_evicted;
    s.n_layer               = n_layer;
    s.n_head_kv             = n_head_kv;
    s.n_ctx                 = n_ctx;
    for (const auto & hd : heads) {
        const int32_t blocks = params->reference ? (hd.len + block_size - 1) / block_size : (int32_t)hd.blocks.size();
        s.heads.push_back({ hd.len, blocks });
        s.blocks_in_use += blocks;
    }
    s.bytes_in_use = s.blocks_in_use * s.block_bytes;
    if (params->reference) {
        s.pool_bytes          = (int64_t)(ggml_nbytes(k_pool) + ggml_nbytes(v_pool));
        s.pool_reserved_bytes = s.pool_bytes;
    } else {
        s.pool_bytes          = (int64_t)pool.committed_bytes();
        s.pool_reserved_bytes = (int64_t)pool.reserved_bytes();
        s.pool_chunk_bytes    = (int64_t)pool.chunk_bytes();
    }
    s.bytes_full_equivalent = (int64_t)n_pos * n_layer * n_head_kv * row_bytes;
    s.bytes_full_allocation = full_allocation_bytes;
    // per token: surrogate multiply-adds over the layers' projection and FFN multiply-adds
    const double d = n_embd, hq = hparams.n_head(0) * (double)dk, hkv = n_head_kv * (double)dk, ff = hparams.n_ff(0);
    const double layer = d * (hq + 2 * hkv) + hq * d + 3 * d * ff;
    double sur         = 0;
    if (params->surrogate == KVZAP_SURROGATE_LINEAR) sur = d * n_head_kv;
    if (params->surrogate == KVZAP_SURROGATE_MLP) sur = d * params->hidden + params->hidden * (double)n_head_kv;
    s.surrogate_flops_share = layer > 0 ? sur / layer : 0;
    s.host_ms               = host_ms;
    return s;
}

bool llama_kvzap_memory::read_rows(const std::vector<ggml_tensor *> & t, int32_t il, int32_t p0, int32_t p1,
                                   int64_t width, float * out) const {
    if (il < 0 || il >= n_layer || !t[il] || p0 < 0 || p1 > n_pos || p0 > p1) return false;
    ggml_backend_tensor_get(t[il], out, (size_t)p0 * width * sizeof(float), (size_t)(p1 - p0) * width * sizeof(float));
    return true;
}

// Scores by position: from the rows when every position has one, else the undecided from the ring and the decided
// from the pairs still held; false when a position's pair is gone from some head.
bool llama_kvzap_memory::read_scores(int32_t il, int32_t p0, int32_t p1, float * out) const {
    if (scores_full) {
        if (!read_rows(scores, il, p0, p1, n_head_kv, out)) return false;
        for (size_t i = 0; i < (size_t)(p1 - p0) * n_head_kv; i++)
            out[i] = biased(il, (int32_t)(i % n_head_kv), out[i]);
        return true;
    }
    if (il < 0 || il >= n_layer || !scores[il] || p0 < 0 || p1 > n_pos || p0 > p1) return false;
    std::fill(out, out + (size_t)(p1 - p0) * n_head_kv, NAN);
    for (int32_t h = 0; h < n_head_kv; h++) {
        const kvzap_head & hd = head(il, h);
        for (int32_t j = 0; j < hd.len; j++) {
            const int32_t p = hd.pos[j];
            if (p >= p0 && p < p1)
                out[(size_t)(p - p0) * n_head_kv + h] = p >= win_start ? score_at(il, h, p) : hd.score[j];
        }
    }
    for (size_t i = 0; i < (size_t)(p1 - p0) * n_head_kv; i++) {
        if (std::isnan(out[i])) return false;
    }
    return true;
}

// ---- state: the pairs each head holds, in list order, with their positions and scores ----

static const uint32_t KVZAP_STATE_MAGIC = 0x4b565a32; // "KVZ2"

void llama_kvzap_memory::state_write(llama_io_write_i & io, llama_seq_id seq_id,
                                     llama_state_seq_flags /*flags*/) const {
    if (seq_id > 0) return;
    const int32_t hdr[8] = { (int32_t)KVZAP_STATE_MAGIC, n_layer, n_head_kv, dk, dv, n_pos, win_start,
                             params->reference ? 1 : 0 };
    io.write(hdr, sizeof(hdr));
    const int32_t types[2] = { (int32_t)params->type_k, (int32_t)params->type_v };
    io.write(types, sizeof(types));
    io.write(&tau_effective, sizeof(tau_effective));
    io.write(protected_pos.data(), (size_t)n_pos);
    const size_t rk = k_pool->nb[1], rv = v_pool->nb[1];
    for (int32_t il = 0; il < n_layer; il++) {
        for (int32_t h = 0; h < n_head_kv; h++) {
            const kvzap_head & hd = head(il, h);
            io.write(&hd.len, sizeof(hd.len));
            io.write(hd.pos.data(), hd.len * sizeof(int32_t));
            io.write(hd.score.data(), hd.len * sizeof(float));
            for (int32_t i = 0; i < hd.len; i++) {
                const int64_t sl = params->reference ? ((int64_t)il * n_head_kv + h) * n_ctx + hd.pos[i] : slot(hd, i);
                io.write_tensor(k_pool, sl * rk, rk);
                io.write_tensor(v_pool, sl * rv, rv);
            }
        }
    }
    // scores of the positions still in the window are needed when they leave it
    const int32_t s0 = scores_full ? 0 : win_start;
    const int32_t n  = n_pos - s0;
    std::vector<float> row(n_head_kv);
    for (int32_t il = 0; il < n_layer; il++) {
        if (!scores[il]) continue;
        for (int32_t p = s0; p < s0 + n; p++)
            io.write_tensor(scores[il], (size_t)score_row(p) * scores[il]->nb[1], n_head_kv * sizeof(float));
    }
}

void llama_kvzap_memory::state_read(llama_io_read_i & io, llama_seq_id seq_id, llama_state_seq_flags /*flags*/) {
    if (seq_id > 0) return;
    try {
        int32_t hdr[8];
        io.read(hdr, sizeof(hdr));
        if ((uint32_t)hdr[0] != KVZAP_STATE_MAGIC || hdr[1] != n_layer || hdr[2] != n_head_kv || hdr[3] != dk ||
            hdr[4] != dv || hdr[7] != (params->reference ? 1 : 0)) {
            throw std::runtime_error("the saved state is not a KVzap state of this model and mode");
        }
        int32_t types[2];
        io.read(types, sizeof(types));
        if (types[0] != (int32_t)params->type_k || types[1] != (int32_t)params->type_v) {
            throw std::runtime_error("the saved state has other KV types");
        }
        if (hdr[5] < 0 || hdr[5] > n_ctx)
            throw std::runtime_error("the saved state holds more tokens than this context");
        if (hdr[6] < 0 || hdr[6] > hdr[5] || hdr[5] - hdr[6] > ring) throw std::runtime_error("corrupt KVzap state");
        clear(true);
        io.read(&tau_effective, sizeof(tau_effective));
        n_pos     = hdr[5];
        win_start = hdr[6];
        protected_pos.resize(n_pos);
        io.read(protected_pos.data(), (size_t)n_pos);
        const size_t rk = k_pool->nb[1], rv = v_pool->nb[1];
        std::vector<char> rowk(rk), rowv(rv);
        if (!params->reference) pool.set_bulk(true); // every pair at once, as a batch
        for (int32_t il = 0; il < n_layer; il++) {
            for (int32_t h = 0; h < n_head_kv; h++) {
                kvzap_head & hd = head(il, h);
                int32_t len;
                io.read(&len, sizeof(len));
                if (len < 0 || len > n_pos) throw std::runtime_error("corrupt KVzap state");
                std::vector<int32_t> pos(len);
                std::vector<float> sc(len);
                io.read(pos.data(), len * sizeof(int32_t));
                io.read(sc.data(), len * sizeof(float));
                for (int32_t i = 0; i < len; i++) {
                    if (pos[i] < 0 || pos[i] >= n_pos) throw std::runtime_error("corrupt KVzap state");
                    if (params->reference) {
                        hd.pos.push_back(pos[i]);
                        hd.score.push_back(sc[i]);
                        hd.len++;
                    } else if (!push_entry(il, h, pos[i], sc[i])) {
                        throw std::runtime_error("the saved state does not fit in this KV pool");
                    }
                    const int64_t sl = params->reference ? ((int64_t)il * n_head_kv + h) * n_ctx + pos[i] : slot(hd, i);
                    io.read(rowk.data(), rk);
                    io.read(rowv.data(), rv);
                    ggml_backend_tensor_set(k_pool, rowk.data(), sl * rk, rk);
                    ggml_backend_tensor_set(v_pool, rowv.data(), sl * rv, rv);
                    if (pos[i] >= win_start) win[(size_t)il * n_head_kv + h][pos[i] % ring] = i;
                }
            }
        }
        if (!params->reference) {
            pool.set_bulk(false);
            compact();
        }
        const int32_t s0 = scores_full ? 0 : win_start;
        std::vector<float> row(n_head_kv);
        for (int32_t il = 0; il < n_layer; il++) {
            if (!scores[il]) continue;
            for (int32_t p = s0; p < n_pos; p++)
                io.read_tensor(scores[il], (size_t)score_row(p) * scores[il]->nb[1], n_head_kv * sizeof(float));
        }
        publish();
    } catch (...) {
        clear(true); // a half-read state is no state
        throw;
    }
}

// ---- memory contexts ----

llama_memory_context_ptr llama_kvzap_memory::init_batch(llama_batch_allocr & balloc, uint32_t n_ubatch,
                                                        bool /*embd_all*/) {
    kvzap_host_timer timer(&host_ms);
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
    // Check, then commit: a batch that cannot fit fails here, before any ubatch has run.
    if (!check_ubatches(ubatches)) {
        LLAMA_LOG_ERROR("%s: %s\n", __func__, last_error.c_str());
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
    if (!full && mem) mem->decide_ahead(); // the ubatch's graph is queued: the next one's first decisions meanwhile
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

// ---- inspection ----

kvzap_stats kvzap_get_stats(const llama_memory_i * mem) {
    const auto * m = dynamic_cast<const llama_kvzap_memory *>(mem);
    return m ? m->stats() : kvzap_stats();
}

bool kvzap_get_scores(const llama_memory_i * mem, int32_t il, int32_t p0, int32_t p1, float * out) {
    const auto * m = dynamic_cast<const llama_kvzap_memory *>(mem);
    return m && m->read_scores(il, p0, p1, out);
}

bool kvzap_get_hidden(const llama_memory_i * mem, int32_t il, int32_t p0, int32_t p1, float * out) {
    const auto * m = dynamic_cast<const llama_kvzap_memory *>(mem);
    return m && m->read_rows(m->hidden, il, p0, p1, m->n_embd, out);
}

void kvzap_settle(llama_memory_i * mem) {
    if (auto * m = dynamic_cast<llama_kvzap_memory *>(mem)) m->settle();
}

void kvzap_set_evicting(llama_memory_i * mem, bool evicting) {
    if (auto * m = dynamic_cast<llama_kvzap_memory *>(mem)) m->set_evicting(evicting);
}

std::string kvzap_last_error(const llama_memory_i * mem) {
    const auto * m = dynamic_cast<const llama_kvzap_memory *>(mem);
    return m ? m->last_error : std::string();
}
