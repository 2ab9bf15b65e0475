// The KVzap memory: a llama_memory_i whose every (layer, KV head) owns a list of fixed-size blocks from one shared
// pool. Tokens enter every head's list; once a token leaves the recent window its pair stays only where the
// surrogate's score reaches tau, the rest are removed (the list's last entry fills the hole) and emptied blocks go
// back to the pool.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kvzap.h"
#include "llama-batch.h"
#include "llama-graph.h"
#include "llama-memory.h"
#include "llama-model.h"

struct kvzap_head {
    std::vector<int32_t> blocks;  // pool block ids, in list order
    std::vector<int32_t> pos;     // position of the entry at each list index
    std::vector<float> score;     // its surrogate score (known once it leaves the window)
    int32_t len = 0;
};

// A row move inside the pool (compaction after a removal): slot dst takes the K and V rows of slot src.
struct kvzap_move {
    int64_t src, dst;
};

class llama_kvzap_memory;

// What one ubatch's graph needs to know about the memory, prepared by apply().
struct kvzap_ubatch_plan {
    int32_t n_tokens = 0;
    int32_t q0 = 0;                       // first position of the ubatch
    int32_t nb_max = 1;                   // block-table width (blocks of the longest list)
    std::vector<int32_t> block_table;     // [n_layer][n_head_kv][nb_max]
    std::vector<int32_t> n_old;           // [n_layer][n_head_kv] entries held before this ubatch
    std::vector<int64_t> new_slots;       // [n_layer][n_tokens][n_head_kv] pool slots of the ubatch's pairs
    std::vector<int32_t> pos;             // [n_tokens]
    std::vector<int64_t> score_rows;      // [n_tokens] rows of the per-layer score/hidden tensors
    int32_t n_kv_ref = 0;                 // reference mode: positions 0 .. n_kv_ref-1 are attended
};

class llama_kvzap_memory_context : public llama_memory_context_i {
  public:
    llama_kvzap_memory_context(llama_memory_status status) : status(status) {}
    llama_kvzap_memory_context(llama_kvzap_memory * mem, std::vector<llama_ubatch> ubatches, bool full)
        : mem(mem), ubatches(std::move(ubatches)), full(full), status(LLAMA_MEMORY_STATUS_SUCCESS) {}

    bool next() override;
    bool apply() override;
    const llama_ubatch & get_ubatch() const override;
    llama_memory_status get_status() const override { return status; }

    llama_kvzap_memory * mem = nullptr;
    std::vector<llama_ubatch> ubatches;
    size_t i_next = 0;
    bool full = false;  // a worst-case context for graph reservation
    llama_memory_status status;
    kvzap_ubatch_plan plan;
    // attn_norm outputs seen while the current graph is built, by layer
    mutable std::vector<ggml_tensor *> attn_norm;
};

class llama_kvzap_memory : public llama_memory_i {
  public:
    llama_kvzap_memory(const llama_model & model, const llama_cparams & cparams, std::shared_ptr<const kvzap_params> params);
    ~llama_kvzap_memory() override = default;

    llama_memory_context_ptr init_batch(llama_batch_allocr & balloc, uint32_t n_ubatch, bool embd_all) override;
    llama_memory_context_ptr init_full() override;
    llama_memory_context_ptr init_update(llama_context * lctx, bool optimize) override;
    bool get_can_shift() const override { return false; }

    void clear(bool data) override;
    bool seq_rm(llama_seq_id seq_id, llama_pos p0, llama_pos p1) override;
    void seq_cp(llama_seq_id, llama_seq_id, llama_pos, llama_pos) override {}
    void seq_keep(llama_seq_id) override {}
    void seq_add(llama_seq_id, llama_pos, llama_pos, llama_pos) override {}
    void seq_div(llama_seq_id, llama_pos, llama_pos, int) override {}
    llama_pos seq_pos_min(llama_seq_id seq_id) const override;
    llama_pos seq_pos_max(llama_seq_id seq_id) const override;

    std::map<ggml_backend_buffer_type_t, size_t> memory_breakdown() const override;

    void state_write(llama_io_write_i & io, llama_seq_id seq_id = -1, llama_state_seq_flags flags = 0) const override;
    void state_read(llama_io_read_i & io, llama_seq_id seq_id = -1, llama_state_seq_flags flags = 0) override;

    // Prepares the memory for a ubatch: evicts what left the window, makes room, places the new pairs.
    bool prepare_ubatch(const llama_ubatch & ub, kvzap_ubatch_plan & plan);
    void settle();
    void plan_worst_case(uint32_t n_tokens, kvzap_ubatch_plan & plan) const;

    kvzap_stats stats() const;
    bool oracle_scores(int32_t c0, int32_t c1, int32_t q0, int32_t q1, float * out, int n_threads, kvzap_device device, kvzap_device * used) const;
    bool read_rows(const std::vector<ggml_tensor *> & t, int32_t il, int32_t p0, int32_t p1, int64_t width, float * out) const;

    std::shared_ptr<const kvzap_params> params;
    const llama_model & model;
    const llama_hparams & hparams;
    int32_t n_layer, n_head_kv, n_embd, dk, dv, n_ctx, block_size, ring;
    int64_t n_blocks_cap;

    ggml_tensor * k_pool = nullptr;  // [dk, n_blocks_cap * block_size]; reference: [dk, n_ctx * n_head_kv * n_layer]
    ggml_tensor * v_pool = nullptr;
    std::vector<ggml_tensor *> scores;   // per layer [n_head_kv, n_ctx]
    std::vector<ggml_tensor *> hidden;   // per layer [n_embd, n_ctx] when capturing
    std::vector<ggml_tensor *> queries;  // oracle: per layer [dk * n_head, n_ctx], post-RoPE queries
    mutable float kq_scale = 0.0f;       // the attention scale the graph used (oracle)
    std::vector<ggml_tensor *> sw1, sb1, sw2, sb2;  // surrogate weights per layer (ggml order: [in, out])

    int32_t positions() const { return n_pos; }
    bool protected_at(int32_t p) const { return p >= 0 && p < (int32_t) protected_pos.size() && protected_pos[p]; }

    std::string last_error;
    mutable std::string last_oracle_error;
    mutable std::vector<std::vector<double>> oracle_gram;  // oracle: per layer, W_O's per-head Gram matrices (once)
    bool evicting = true;  // false: new tokens are protected (prompt-only eviction while generating)

  private:
    friend class llama_kvzap_memory_context;
    std::vector<std::unique_ptr<ggml_context, void (*)(ggml_context *)>> ctxs;
    std::vector<ggml_backend_buffer_ptr> bufs;

    std::vector<kvzap_head> heads;       // [layer][head]
    std::vector<std::vector<int32_t>> win;  // per head: list index of the window entry at ring slot pos % ring
    std::vector<uint8_t> protected_pos;  // per position: never evicted
    std::vector<int32_t> free_blocks;
    int32_t n_pos = 0;       // positions held (next position)
    int32_t win_start = 0;   // positions below this have been decided
    float tau_effective;
    int64_t n_evicted = 0, n_budget_evicted = 0;

    kvzap_head & head(int32_t il, int32_t h) { return heads[(size_t) il * n_head_kv + h]; }
    const kvzap_head & head(int32_t il, int32_t h) const { return heads[(size_t) il * n_head_kv + h]; }
    int64_t slot(const kvzap_head & hd, int32_t idx) const {
        return (int64_t) hd.blocks[idx / block_size] * block_size + idx % block_size;
    }
    bool keep(int32_t il, int32_t h, int32_t p, float s) const;
    void remove_entry(int32_t il, int32_t h, int32_t idx, std::vector<kvzap_move> & moves);
    void evict_until(int32_t boundary, std::vector<kvzap_move> & moves);
    void apply_moves(const std::vector<kvzap_move> & moves);
    float score_at(int32_t il, int32_t h, int32_t p) const;
    bool enforce_budget(int64_t need_blocks, std::vector<kvzap_move> & moves);
    int64_t blocks_in_use() const;
};
