// The KVzap memory: the llama_memory_i adapter. Every (layer, KV head) owns a list of fixed-size blocks from one shared
// pool (kvzap-pool.h); which pairs stay is the policy's (kvzap-policy.h); the graph reads the plan and the tensors
// below. The dense capture memories of tests and calibration derive from it (kvzap-capture.h). Tokens enter every
// head's list; once a token leaves the recent window its pair stays only where the surrogate's score reaches tau, the
// rest are removed (the list's last entry fills the hole) and emptied blocks go back to the pool.
#pragma once

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kvzap-pool.h"
#include "kvzap.h"
#include "llama-batch.h"
#include "llama-graph.h"
#include "llama-memory.h"
#include "llama-model.h"

struct kvzap_head {
    std::vector<int32_t> blocks; // pool block ids, in list order
    std::vector<int32_t> pos;    // position of the entry at each list index
    std::vector<float> score;    // its surrogate score (known once it leaves the window)
    int32_t len = 0;
    // first index of `blocks` whose id the persistent block table may not hold yet (INT32_MAX: it holds them all)
    int32_t bt_dirty = 0;
};

class llama_kvzap_memory;

// The memory's host work by phase, for profiling: with KVZAP_HOST_PHASES=1 each settle prints the totals so far to
// stderr (kvzap_host_timer on llama_kvzap_memory::phase()).
enum kvzap_phase : int {
    KVZAP_PHASE_EVICT,   // the decisions on the pairs that leave the window, and their removal
    KVZAP_PHASE_WAIT,    // of those, waiting for the device before the scores are read
    KVZAP_PHASE_APPEND,  // the new pairs' entries and blocks
    KVZAP_PHASE_COMPACT, // compaction and the spill: the row moves (device synchronisations included), decommits
    KVZAP_PHASE_TABLE,   // the new slots, the block table and its upload
    KVZAP_PHASE_INPUT,   // the graph's inputs (set_input)
    KVZAP_PHASE_COUNT
};

// Adds the wall time of its scope to a counter in ms: a memory's host_ms, or one of its phases (none: reads no clock).
class kvzap_host_timer {
public:
    explicit kvzap_host_timer(double * total) : total(total) {
        if (total) t0 = std::chrono::steady_clock::now();
    }
    ~kvzap_host_timer() {
        if (total) *total += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    kvzap_host_timer(const kvzap_host_timer &)             = delete;
    kvzap_host_timer & operator=(const kvzap_host_timer &) = delete;

private:
    double * total;
    std::chrono::steady_clock::time_point t0;
};

// What one ubatch's graph needs to know about the memory, prepared by apply().
struct kvzap_ubatch_plan {
    int32_t n_tokens = 0;
    int32_t q0       = 0;             // first position of the ubatch
    int32_t nb_max   = 1;             // block-table width (blocks of the longest list)
    std::vector<int32_t> block_table; // [n_layer][n_head_kv][nb_max]; empty when the memory's table is persistent
    std::vector<int32_t> n_old;       // [n_layer][n_head_kv] entries held before this ubatch
    std::vector<int64_t> new_slots;   // [n_layer][n_tokens][n_head_kv] pool slots of the ubatch's pairs
    std::vector<int32_t> pos;         // [n_tokens]
    std::vector<int64_t> score_rows;  // [n_tokens] rows of the per-layer score/hidden tensors
    int32_t n_kv_ref = 0;             // reference mode: positions 0 .. n_kv_ref-1 are attended
};

class llama_kvzap_memory_context : public llama_memory_context_i {
public:
    llama_kvzap_memory_context(llama_memory_status status) : status(status) {}
    llama_kvzap_memory_context(llama_kvzap_memory * mem, std::vector<llama_ubatch> ubatches, bool full) :
        mem(mem), ubatches(std::move(ubatches)), full(full), status(LLAMA_MEMORY_STATUS_SUCCESS) {}

    bool next() override;
    bool apply() override;
    const llama_ubatch & get_ubatch() const override;
    llama_memory_status get_status() const override { return status; }

    llama_kvzap_memory * mem = nullptr;
    std::vector<llama_ubatch> ubatches;
    size_t i_next = 0;
    bool full     = false; // a worst-case context for graph reservation
    llama_memory_status status;
    kvzap_ubatch_plan plan;
    // attn_norm outputs seen while the current graph is built, by layer
    mutable std::vector<ggml_tensor *> attn_norm;
};

class llama_kvzap_memory : public llama_memory_i {
public:
    llama_kvzap_memory(const llama_model & model, const llama_cparams & cparams,
                       std::shared_ptr<const kvzap_params> params);
    ~llama_kvzap_memory() override = default;

    llama_memory_context_ptr init_batch(llama_batch_allocr & balloc, uint32_t n_ubatch, bool embd_all) override;
    llama_memory_context_ptr init_full() override;
    llama_memory_context_ptr init_update(llama_context * lctx, bool optimize) override;
    bool get_can_shift() const override { return false; }

    void clear(bool data) override;
    bool seq_rm(llama_seq_id seq_id, llama_pos p0, llama_pos p1) override;
    // One sequence of consecutive positions whose decisions depend on all that came before: copying, shifting or
    // dividing positions has no meaning here, and silently ignoring it would corrupt what the caller believes.
    void seq_cp(llama_seq_id, llama_seq_id, llama_pos, llama_pos) override { refuse("seq_cp"); }
    void seq_keep(llama_seq_id) override { refuse("seq_keep"); }
    void seq_add(llama_seq_id, llama_pos, llama_pos, llama_pos) override { refuse("seq_add"); }
    void seq_div(llama_seq_id, llama_pos, llama_pos, int) override { refuse("seq_div"); }
    llama_pos seq_pos_min(llama_seq_id seq_id) const override;
    llama_pos seq_pos_max(llama_seq_id seq_id) const override;

    std::map<ggml_backend_buffer_type_t, size_t> memory_breakdown() const override;

    void state_write(llama_io_write_i & io, llama_seq_id seq_id = -1, llama_state_seq_flags flags = 0) const override;
    void state_read(llama_io_read_i & io, llama_seq_id seq_id = -1, llama_state_seq_flags flags = 0) override;

    // Whether ubatches of these positions fit, with every pair that the budget may drop dropped (init_batch's check).
    virtual bool check_ubatches(const std::vector<llama_ubatch> & ubatches);
    // Commits a ubatch that check_ubatches accepted: evicts what left the window, makes room, places the new pairs.
    virtual bool prepare_ubatch(const llama_ubatch & ub, kvzap_ubatch_plan & plan);
    virtual void settle();
    void set_evicting(bool on);
    void plan_worst_case(uint32_t n_tokens, kvzap_ubatch_plan & plan) const;

    // The statistics as of the end of the last ubatch (or trim, clear, load): safe to read from any thread.
    kvzap_stats stats() const;
    bool read_rows(const std::vector<ggml_tensor *> & t, int32_t il, int32_t p0, int32_t p1, int64_t width,
                   float * out) const;
    bool read_scores(int32_t il, int32_t p0, int32_t p1, float * out) const;

    // ---- for the graph ----
    std::shared_ptr<const kvzap_params> params;
    const llama_model & model;
    const llama_hparams & hparams;
    int32_t n_layer, n_head_kv, n_embd, dk, dv, n_ctx, block_size, ring;
    int pool_device = -1; // the CUDA device whose memory holds the pool; -1: host memory

    ggml_tensor * k_pool =
        nullptr; // [dk, capacity * block_size] in reserved memory; reference: [dk, n_ctx * n_head_kv * n_layer]
    ggml_tensor * v_pool = nullptr;
    // The block table, I32 [nb_cap, n_head_kv * n_layer], in the pool's memory (VRAM with a device pool) and kept
    // there: each ubatch writes only the ids that changed (sync_block_table), not the whole table. Not in reference
    // mode.
    ggml_tensor * block_table = nullptr;
    int32_t nb_cap            = 0;
    std::vector<int32_t> bt_delta; // (index, block id) pairs of the last sync
    // A ubatch's inputs (kvzap_ubatch_plan's n_old, pos, new_slots and score_rows), in the same memory as the table,
    // sized for n_ubatch tokens and written once per ubatch (set_input). The graph reads each layer's part through a
    // view: views of an ordinary graph input would each be copied to the device on their own, with the scheduler's
    // synchronisations, 2 per layer and decode step (about 1 ms a step on an 8B model). Null for an oracle on a
    // GPU, which keeps ordinary graph inputs.
    ggml_tensor * step_n_old = nullptr; // I32 [n_head_kv * n_layer]; not for a reference or an oracle
    ggml_tensor * step_pos   = nullptr; // I32 [n_ubatch]
    ggml_tensor * step_slots = nullptr; // I64 [n_head_kv * n_ubatch * n_layer], a ubatch's [n_layer][T][n_head_kv]
    ggml_tensor * step_rows  = nullptr; // I64 [n_ubatch]
    int32_t step_tokens      = 0;       // the most tokens a ubatch has (cparams.n_ubatch)
    std::vector<ggml_tensor *>
        scores; // per layer [n_head_kv, ring], by pos % ring; [n_head_kv, n_ctx] by pos when scores_full
    ggml_tensor * scores_all = nullptr; // the ring of every layer, [n_head_kv, n_layer, ring] (scores[il] view it)
    std::vector<ggml_tensor *> hidden;  // per layer [n_embd, n_ctx] when capturing
    std::vector<ggml_tensor *> queries; // oracle: per layer [dk * n_head, n_ctx], post-RoPE queries
    mutable float kq_scale = 0.0f;      // the attention scale the graph used (oracle)
    std::vector<ggml_tensor *> sw1, sb1, sw2; // surrogate weights per layer (ggml order: [in, out]); sb1: the MLP only
    // The surrogate's output bias, [n_layer][n_head_kv]: added on the host where scores are read, not in the graph
    // (the scores are read only here; a bias add in the graph would be a kernel per layer and decode step). The score
    // rows on the device hold the score less this bias; score_at and read_scores return the score.
    std::vector<float> score_bias;
    float biased(int32_t il, int32_t h, float raw) const {
        return score_bias.empty() ? raw : raw + score_bias[(size_t)il * n_head_kv + h];
    }
    bool scores_full = false; // reference and capture: a score row per position (else a ring of the undecided)

    int64_t score_row(int32_t p) const { return scores_full ? p : p % ring; }
    int32_t positions() const { return n_pos; }
    bool protected_at(int32_t p) const { return p >= 0 && p < (int32_t)protected_pos.size() && protected_pos[p]; }

    std::string last_error;
    // kvzap_stats::host_ms: what the memory's host work has taken since clear (a kvzap_host_timer adds each span,
    // the graph's input setting included)
    mutable double host_ms = 0;
    // KVZAP_HOST_PHASES: host_ms by phase (kvzap_phase), since clear
    bool phases_on = false;
    mutable std::array<double, KVZAP_PHASE_COUNT> phase_ms{};
    double * phase(kvzap_phase p) const { return phases_on ? &phase_ms[p] : nullptr; }

protected:
    friend class llama_kvzap_memory_context;
    [[noreturn]] void refuse(const char * op) const;
    void publish();
    bool check_positions(const std::vector<llama_ubatch> & ubatches);
    bool begin_plan(const llama_ubatch & ub, kvzap_ubatch_plan & plan);

    std::vector<std::unique_ptr<ggml_context, void (*)(ggml_context *)>> ctxs;
    std::vector<ggml_backend_buffer_ptr> bufs;
    kvzap_block_pool pool;             // blocks and their memory (not in reference mode)
    int64_t full_allocation_bytes = 0; // what a full cache of n_ctx positions allocates

    std::vector<kvzap_head> heads;         // [layer][head]
    std::vector<std::vector<int32_t>> win; // per head: list index of the window entry at ring slot pos % ring
    std::vector<uint8_t> protected_pos;    // per position held: never evicted
    bool evicting     = true;              // false: new tokens are protected (prompt-only eviction while generating)
    int32_t n_pos     = 0;                 // positions held (next position)
    int32_t win_start = 0;                 // positions below this have been decided
    float tau_effective;
    int64_t n_evicted = 0, n_budget_evicted = 0;

    mutable std::mutex stats_mutex;
    kvzap_stats snapshot;

    kvzap_head & head(int32_t il, int32_t h) { return heads[(size_t)il * n_head_kv + h]; }
    const kvzap_head & head(int32_t il, int32_t h) const { return heads[(size_t)il * n_head_kv + h]; }
    bool sync_block_table();
    int64_t slot(const kvzap_head & hd, int32_t idx) const {
        return (int64_t)hd.blocks[idx / block_size] * block_size + idx % block_size;
    }
    kvzap_stats compute_stats() const;
    bool keep(int32_t il, int32_t h, int32_t p, float s) const;
    bool grow_blocks(int32_t il, int32_t h, int32_t n_entries);
    bool push_entry(int32_t il, int32_t h, int32_t p, float s);
    bool append_entries(int32_t il, int32_t h, int32_t q0, int32_t n);
    // Where a removal's row move and emptied block go: to the pool (none), or, for a worker of a parallel decision
    // pass, into lists the pool takes afterwards, worker by worker, in the order they were made.
    struct removal_sink {
        std::vector<kvzap_row_move> moves;
        std::vector<int32_t> released;
        int64_t n_removed = 0;
    };
    // idx's rows are overwritten by the last entry's; `win_lo`: the first undecided position (window entries keep their
    // ring slot current)
    void remove_entry(int32_t il, int32_t h, int32_t idx, int32_t win_lo, removal_sink * sink = nullptr);
    void remove_entry(int32_t il, int32_t h, int32_t idx) { remove_entry(il, h, idx, win_start); }
    // `beside`: while a graph runs that writes the scores of positions from running_q0 on (decide_ahead)
    void evict_until(int32_t boundary, bool beside = false);
    // Once a ubatch's graph is queued (the context's next()): the decisions of the pairs before it that leave the
    // window by its end, made while the device computes it.
    void decide_ahead();
    int32_t running_q0   = 0;    // the first position of the ubatch last prepared
    bool decide_ahead_on = true; // KVZAP_DECIDE_AHEAD=0 turns it off
    // The decisions on positions [lo, hi) of heads [h0, h1) (flat indices), head by head: what evict_until does on one
    // thread; returns the pairs removed.
    int64_t decide_heads(int32_t h0, int32_t h1, int32_t lo, int32_t hi, removal_sink * sink);
    int n_threads = 1;               // the host threads a decision pass may use (the context's batch threads)
    std::vector<removal_sink> sinks; // one per worker of the last parallel pass (kept for their capacity)
    void compact();
    float score_at(int32_t il, int32_t h, int32_t p) const;
    float decision_score(int32_t il, int32_t h, int32_t p);
    std::vector<int32_t> random_group; // random policy, per head: the first position of the group cached
    std::vector<float> random_scores;  // [head][64]
    // Scores in device memory are read to the host once per decision pass: the rows of positions [lo, hi) of every
    // layer, by score_row (score_at reads them from here while they are current). `beside`: rows that finished graphs
    // wrote, read without waiting for the one running.
    void fetch_scores(int32_t lo, int32_t hi, bool beside = false);
    std::vector<std::vector<float>> score_host;
    int32_t score_host_lo = 0, score_host_hi = 0;
    bool enforce_budget(int64_t need_blocks);
    int64_t must_keep_blocks(int32_t q0, int32_t n_new) const;
};
