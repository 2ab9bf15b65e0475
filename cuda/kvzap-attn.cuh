#pragma once
// CUDA kernels of GGML_OP_KVZAP_ATTN and of the KV pool's row traffic (append, compaction). They compute what the CPU
// kernel (native/kvzap/kvzap-attn-cpu.cpp) defines: every KV head g reads its own list of pairs, list index i living in
// pool slot block_table[g][i / B] * B + i % B; query token t of the ubatch sees the head's first
// n_old[g] + #{j : pos[j] <= pos[t]} entries (every older pair, and the ubatch's own pairs causally).
//
// Attention is one tensor-core kernel (mma.sync m16n8k16, f16 operands, f32 accumulation; sm_80 and newer) in two
// shapes: decoding (at most 16 query rows per KV head: the G query heads of a GQA group, times the tokens) has its 4
// warps split each tile of keys, so one read of each block serves the whole group; prefill has them split 64 query
// rows. Long lists are cut into chunks of blocks (split-K), each chunk's partial softmax (max, sum, unnormalised
// output) is written out and a second kernel merges them. KV rows are f16 or q8_0 (dequantised to f16 in shared
// memory).
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kvzap-moves.h" // kvzap_row_move (native/kvzap)

enum kvzap_kv_type : int32_t {
    KVZAP_KV_F16  = 0,
    KVZAP_KV_Q8_0 = 1,
};

// Bytes of one pool row of d values.
size_t kvzap_kv_row_bytes(kvzap_kv_type type, int32_t d);

struct kvzap_attn_args {
    const float * q; // [dk, n_head, n_tokens]
    int64_t q_nb1;   // bytes between query heads
    int64_t q_nb2;   // bytes between tokens
    const void * k;  // pool rows of dk values
    const void * v;  // pool rows of dv values
    int64_t k_row;   // bytes per K row
    int64_t v_row;   // bytes per V row
    kvzap_kv_type type;
    const int32_t * block_table; // [n_head_kv][bt_stride]
    int64_t bt_stride;           // elements between heads' rows of the block table
    const int32_t * n_old;       // [n_head_kv]
    const int32_t * pos;         // [n_tokens]
    int32_t dk, dv, n_head, n_head_kv, n_tokens;
    int32_t block_size;
    int32_t nb_max; // blocks in the longest list (the block table's width): bounds every head's length
    int64_t
        total_len; // sum over heads of n_old + n_tokens if the caller knows it (0: unknown), to cut ragged heads evenly
    float scale;
    float * dst;     // [dv, n_head, n_tokens]
    int64_t dst_nb1; // bytes between heads
    int64_t dst_nb2; // bytes between tokens
};

// How a call is cut: chunks of `chunk` list entries per CTA, n_split of them per head, and the scratch that their
// partial results need (0 when n_split == 1: the kernel writes dst itself).
struct kvzap_attn_plan {
    int32_t rows_per_cta; // 16 (decoding) or 64 (prefill)
    int32_t n_split;
    int32_t chunk;
    size_t workspace_bytes;
};

// Whether the kernels serve these shapes on a device of compute capability cc (e.g. 90).
bool kvzap_attn_supported(int cc, kvzap_kv_type type, int32_t dk, int32_t dv);

// Chunks are sized so that the CTAs with work fill the device once (n_sm times the CTAs that fit on one
// multiprocessor).
kvzap_attn_plan kvzap_attn_make_plan(const kvzap_attn_args & a, int n_sm);

// Runs the attention on `stream`; workspace must hold plan.workspace_bytes (may be null when that is 0).
cudaError_t kvzap_attn_cuda(const kvzap_attn_args & a, const kvzap_attn_plan & plan, void * workspace,
                            cudaStream_t stream);

// Append: row r of src (d f32 values, src_nb1 bytes apart) is converted to the pool's type into slot slots[r].
cudaError_t kvzap_append_cuda(const float * src, int64_t src_nb1, int64_t n_rows, int32_t d, const int64_t * slots,
                              void * pool, int64_t row_bytes, kvzap_kv_type type, cudaStream_t stream);

// Compaction. The memory's row moves come as a set of independent (src, dst) pairs (kvzap_move_log::resolve, in
// kvzap-moves.h): src is the slot whose rows end in dst. kvzap_moves_cuda applies such a set to both pools at once,
// through scratch (n * (k_row + v_row) bytes): every source is read before any write.
cudaError_t kvzap_moves_cuda(void * k_pool, void * v_pool, int64_t k_row, int64_t v_row,
                             const kvzap_row_move * moves_dev, int64_t n, void * scratch, cudaStream_t stream);
// The same for a set where no destination is another pair's source (the usual decode step: the removed pairs' holes
// take the lists' last entries): every row goes straight to its place, one kernel, no scratch.
cudaError_t kvzap_moves_direct_cuda(void * k_pool, void * v_pool, int64_t k_row, int64_t v_row,
                                    const kvzap_row_move * moves_dev, int64_t n, cudaStream_t stream);
