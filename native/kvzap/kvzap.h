// KVzap inside llama.cpp: the parameters of a KVzap memory and the hooks that the patched llama.cpp calls.
// Everything here is inert unless a context is created with KVzap parameters (see kvzap_set_next_params).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ggml.h"

struct llama_model;
struct llama_memory_i;
struct llama_memory_params;
struct llama_cparams;
struct llm_graph_context;
class llm_graph_input_attn_kv;

enum kvzap_policy {
    KVZAP_POLICY_KVZAP  = 0, // keep a pair once it leaves the window iff its surrogate score >= tau
    KVZAP_POLICY_WINDOW = 1, // StreamingLLM: the first n_sink tokens and the recent window
    KVZAP_POLICY_RANDOM =
        2, // evaluation baseline: seeded scores that keep a fraction `keep` of each head (kvzap-scores.cpp)
    KVZAP_POLICY_SCORES = 3, // evaluation reference: scores given from outside (the KVzip+ oracle's), kept iff >= tau
};

enum kvzap_surrogate_kind {
    KVZAP_SURROGATE_NONE   = 0,
    KVZAP_SURROGATE_LINEAR = 1, // s = W x + b
    KVZAP_SURROGATE_MLP    = 2, // s = W2 gelu_erf(W1 x + b1) + b2
};

struct kvzap_layer_weights {
    // row-major, PyTorch order: w1 [out][in]
    std::vector<float> w1, b1, w2, b2;
};

struct kvzap_params {
    kvzap_policy policy = KVZAP_POLICY_KVZAP;
    float tau           = -4.0f;
    int32_t window      = 128;
    int32_t n_sink      = 0;
    int32_t block_size  = 16; // KV entries per block
    int64_t budget_bytes =
        0; // most bytes the pool may hold; 0: kvzap_default_budget() (never more than a full cache of n_ctx)
    bool decode_eviction = true; // also evict generated tokens (else only prompt tokens are ever dropped)
                                 // (the addon's flag; the memory follows kvzap_set_evicting)
    bool reference      = false; // test-only: dense per-position storage and stock attention with per-head masks
    bool capture_hidden = false; // keep every layer's attn_norm rows (calibration, tests)
    bool oracle         = false; // calibration: dense, no eviction, queries and attn_norm captured for KVzip+ scores
    ggml_type type_k    = GGML_TYPE_F16;
    ggml_type type_v    = GGML_TYPE_F16;
    kvzap_surrogate_kind surrogate = KVZAP_SURROGATE_NONE;
    int32_t hidden                 = 0; // MLP hidden width
    std::vector<kvzap_layer_weights> layers;
    uint64_t seed = 0;    // random: the hash seed
    float keep    = 1.0f; // random: the kept fraction of each head outside the window (tau is 1 - keep)
    std::vector<std::vector<float>> external_scores; // scores: per layer [pos][n_head_kv]; later positions are kept
};

// The pool's cap when no budget is given: a quarter of physical memory, so that a long context with a weak threshold
// cannot push the machine into swap; beyond it the lowest-scoring pairs outside the window go first.
int64_t kvzap_default_budget();

// The score of the pair (il, h, p) under the random and scores policies (the keep rule is s >= tau for both).
// random: 1 - (rank + 0.5) / 64 where rank orders a hash of (seed, il, h, p) within p's group of 64 positions, so that
// exactly round(keep * 64) pairs of each full group of each head are kept, at seeded random places.
float kvzap_policy_score(const kvzap_params & P, int32_t il, int32_t h, int32_t p, int32_t n_head_kv);
// random: the scores of positions [g0, g0 + 64) of one head (g0 a multiple of 64) at once, as kvzap_policy_score gives
// them one by one (64 hashes and a sort instead of 64 hashes per position).
void kvzap_policy_group_scores(const kvzap_params & P, int32_t il, int32_t h, int32_t g0, float * out);
const char * kvzap_policy_name(kvzap_policy policy);

// The next llama context created on this thread gets a KVzap memory with these parameters.
void kvzap_set_next_params(std::shared_ptr<const kvzap_params> params);

// ---- hooks called by patched llama.cpp ----

// llama_model::create_memory: a KVzap memory when parameters are pending on this thread, else nullptr.
llama_memory_i * kvzap_create_memory_hook(const llama_model & model, const llama_memory_params & params,
                                          const llama_cparams & cparams);

// llm_graph_context::cb: sees every named tensor; KVzap keeps each layer's "attn_norm".
void kvzap_graph_cb_hook(const llm_graph_context & g, ggml_tensor * cur, const char * name, int il);

// llm_graph_context::build_attn_inp_kv: our input when the memory is KVzap's, else nullptr.
llm_graph_input_attn_kv * kvzap_build_attn_inp_hook(const llm_graph_context & g);

// llm_graph_context::build_attn(llm_graph_input_attn_kv *, ...): the KVzap attention when inp is ours, else nullptr.
ggml_tensor * kvzap_build_attn_hook(const llm_graph_context & g, llm_graph_input_attn_kv * inp, ggml_tensor * wo,
                                    ggml_tensor * wo_b, ggml_tensor * wo_s, ggml_tensor * q_cur, ggml_tensor * k_cur,
                                    ggml_tensor * v_cur, ggml_tensor * kq_b, ggml_tensor * sinks, ggml_tensor * v_mla,
                                    float kq_scale, int il);

// ---- statistics and inspection, for the addon ----

struct kvzap_head_stats {
    int32_t entries; // KV pairs held
    int32_t blocks;  // blocks in use
};

struct kvzap_stats {
    bool active                   = false;
    kvzap_policy policy           = KVZAP_POLICY_KVZAP;
    float tau                     = 0.0f;
    float tau_effective           = 0.0f; // > tau once a budget forced lower-scoring pairs out
    int32_t window                = 0;
    int32_t block_size            = 0;
    int64_t block_bytes           = 0; // K and V bytes of one block
    int64_t pool_blocks           = 0; // capacity (the budget, in blocks)
    int64_t blocks_in_use         = 0;
    int64_t high_water_blocks     = 0;  // 1 + the highest block id in use (what must stay committed)
    int64_t bytes_in_use          = 0;  // K and V bytes of the blocks in use
    int64_t pool_bytes            = 0;  // physical memory the pool holds now (committed chunks)
    int64_t pool_reserved_bytes   = 0;  // address space reserved for the pool (a region per layer; costs no memory)
    int64_t pool_chunk_bytes      = 0;  // the granularity in which the pool commits memory (its backend's chunk)
    int32_t pool_device           = -1; // the CUDA device whose memory (VRAM) holds the pool; -1: host memory
    int64_t bytes_full_equivalent = 0;  // what a full cache holds for the same tokens
    int64_t bytes_full_allocation = 0;  // what a full cache of the context's n_ctx positions allocates
    int32_t n_ctx                 = 0;
    int64_t tokens                = 0; // positions seen
    int64_t evicted               = 0; // pairs dropped so far (all layers and heads)
    int64_t budget_evicted        = 0; // of which by the budget
    int32_t n_layer = 0, n_head_kv = 0;
    std::vector<kvzap_head_stats> heads; // [layer][head]
    double surrogate_flops_share = 0.0;  // surrogate FLOPs / the layers' matmul FLOPs, per token
    double host_ms               = 0.0;  // wall time the memory's own host work took so far (batch checks, keep/drop
                                         // decisions, block moves, table sync, graph inputs), since clear
};

// Statistics of a context's memory (active=false when it is not a KVzap memory): the snapshot published at the end of
// the last ubatch (or clear, trim, state load), so any thread may read it while another decodes.
kvzap_stats kvzap_get_stats(const llama_memory_i * mem);

// Copies the surrogate scores of layer il for positions [p0, p1) (row-major [pos][head]); false if unavailable.
bool kvzap_get_scores(const llama_memory_i * mem, int32_t il, int32_t p0, int32_t p1, float * out);

// Copies captured attn_norm rows of layer il for positions [p0, p1) (row-major [pos][n_embd]); false if unavailable.
bool kvzap_get_hidden(const llama_memory_i * mem, int32_t il, int32_t p0, int32_t p1, float * out);

// After a batch, on the thread that decoded it: drops the pairs that have left the window now rather than when
// the next batch starts (the same decisions), so that the memory in use is reported as it will be.
void kvzap_settle(llama_memory_i * mem);

// false: prompt-only eviction, as kvpress's decoding=False: the pairs still in the window (the prompt's tail) and
// those of every token decoded from now on are protected; nothing more is decided until it is switched back on.
void kvzap_set_evicting(llama_memory_i * mem, bool evicting);

// KVzip+ oracle scores (calibration): for context positions [c0, c1) and queries [q0, q1) already evaluated in an
// oracle memory, out[l][i - c0][h] = max over j in [q0, q1) and query heads g of KV head h of
// a[g, j, i] * ||W_O^(g) v_i|| / ||x_j||, with a the softmax over keys 0..j. Computed on `device` (AUTO: CUDA when the
// build has a device, else the CPU); *used says which. False, with *err, if the memory or the device cannot.
enum kvzap_device { KVZAP_DEVICE_AUTO = 0, KVZAP_DEVICE_CPU = 1, KVZAP_DEVICE_CUDA = 2 };
bool kvzap_oracle_scores(const llama_memory_i * mem, int32_t c0, int32_t c1, int32_t q0, int32_t q1, float * out,
                         int n_threads, kvzap_device device, kvzap_device * used, std::string * err);

// Oracle memories (tests): the captured queries [pos][n_head * dk] and the dense K [head][pos][dk] and V
// [head][pos][dv] of layer il for positions [p0, p1).
bool kvzap_oracle_rows(const llama_memory_i * mem, int32_t il, int32_t p0, int32_t p1, std::vector<float> & q,
                       std::vector<float> & k, std::vector<float> & v);

// The last error the memory reported (pool exhausted, ...), or empty.
std::string kvzap_last_error(const llama_memory_i * mem);
