// One kernel for a KVzap layer's stores, fused from the graph in ggml's CUDA backend (patch 0003 calls
// ggml_cuda_kvzap_try_fuse first in ggml_cuda_try_fuse). A layer has, besides the attention, a linear surrogate
// (MUL_MAT of a [n_embd, n_head_kv] F32 weight by the tokens' attn_norm) and three SET_ROWS: its scores into the
// score ring, K and V into the pool. In a decode step each is a kernel of a microsecond or two whose launch costs
// about as much again; together they are one. A prefill ubatch's surrogate is fused too: its matmul would otherwise
// go to cuBLAS, whose workspace and library state the driver counts against the session (the only cuBLAS call of a
// linear profile's graph; stock llama.cpp makes none with quantized weights). The fusion computes exactly what the
// nodes compute (the dot products in f32, in another order than the matmul's), so the graph, the CPU backend and
// every other backend are unchanged, and GGML_CUDA_DISABLE_FUSION=1 turns it off with ggml's own fusions,
// KVZAP_CUDA_FUSE=0 alone.
#include "common.cuh"
#include "ggml-impl.h"

#include <algorithm>
#include <vector>

namespace {

constexpr int STORE_THREADS = 256;
constexpr int MAX_JOBS      = 4;

struct store_job {
    const float * src; // rows of n_cols F32, src_nb1 bytes apart
    char * dst;        // destination rows (F16 or F32), dst_nb1 bytes apart
    const int64_t * idx;
    int64_t n_rows;
    int64_t src_nb1, dst_nb1;
    int32_t n_cols;
    int32_t f16;
};

struct store_args {
    store_job job[MAX_JOBS];
    int32_t n_jobs;
    int32_t dot_job; // the job whose rows are w * x, computed here (-1: none)
    const float * w; // [n_in] per output, w_nb1 bytes apart
    const float * x; // [n_in] per token, x_nb1 bytes apart
    int64_t w_nb1, x_nb1;
    int32_t n_in;
    int32_t n_out;        // outputs per token
    int32_t dot_tokens;   // 1: a block per output; more: a block per token, a warp per output
    int32_t n_dot_blocks; // the blocks of the dot
    int64_t n_pairs;      // copies: element pairs over the jobs other than the dot's
};

__device__ __forceinline__ void put(const store_job & j, int64_t row, int64_t col, float v0, float v1, bool two) {
    char * d = j.dst + j.idx[row] * j.dst_nb1;
    if (j.f16) {
        __half * h = (__half *)d + col;
        if (two) {
            *(__half2 *)h = __floats2half2_rn(v0, v1);
        } else {
            h[0] = __float2half_rn(v0);
        }
    } else {
        float * f = (float *)d + col;
        f[0]      = v0;
        if (two) f[1] = v1;
    }
}

__global__ void __launch_bounds__(STORE_THREADS) kvzap_store_kernel(const store_args a) {
    ggml_cuda_pdl_sync(); // the sources are the previous kernels' outputs
    if ((int)blockIdx.x < a.n_dot_blocks && a.dot_tokens > 1) {
        // token t: each warp strides over the inputs for its outputs (the token's row stays in L1 for the others)
        const int64_t t  = blockIdx.x;
        const float * xr = (const float *)((const char *)a.x + t * a.x_nb1);
        const int lane   = threadIdx.x % 32;
        for (int o = threadIdx.x / 32; o < a.n_out; o += STORE_THREADS / 32) {
            const float * wr = (const float *)((const char *)a.w + o * a.w_nb1);
            float acc        = 0.0f;
            for (int i = lane; i < a.n_in; i += 32) acc += wr[i] * xr[i];
            for (int s = 16; s > 0; s >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, s);
            if (lane == 0) put(a.job[a.dot_job], t, o, acc, 0.0f, false);
        }
        return;
    }
    if ((int)blockIdx.x < a.n_dot_blocks) {
        // output o of the token's dot: the block's threads stride over the inputs, then a warp and a block reduction
        const int o      = blockIdx.x;
        const float * wr = (const float *)((const char *)a.w + o * a.w_nb1);
        float acc        = 0.0f;
        for (int i = threadIdx.x; i < a.n_in; i += STORE_THREADS) acc += wr[i] * a.x[i];
        for (int s = 16; s > 0; s >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, s);
        __shared__ float red[STORE_THREADS / 32];
        if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = acc;
        __syncthreads();
        if (threadIdx.x == 0) {
            float sum = 0.0f;
            for (int w = 0; w < STORE_THREADS / 32; w++) sum += red[w];
            put(a.job[a.dot_job], 0, o, sum, 0.0f, false);
        }
        return;
    }
    // copies: element pairs (columns 2c, 2c + 1 of a row; a lone last column where n_cols is odd), job by job
    const int64_t stride = (int64_t)(gridDim.x - a.n_dot_blocks) * STORE_THREADS;
    for (int64_t e = (int64_t)(blockIdx.x - a.n_dot_blocks) * STORE_THREADS + threadIdx.x; e < a.n_pairs; e += stride) {
        int64_t k = e;
        for (int jn = 0; jn < a.n_jobs; jn++) {
            if (jn == a.dot_job) continue;
            const store_job & j = a.job[jn];
            const int64_t per   = (j.n_cols + 1) / 2;
            if (k >= j.n_rows * per) {
                k -= j.n_rows * per;
                continue;
            }
            const int64_t row = k / per, col = (k % per) * 2;
            const float * s = (const float *)((const char *)j.src + row * j.src_nb1) + col;
            const bool two  = col + 1 < j.n_cols;
            put(j, row, col, s[0], two ? s[1] : 0.0f, two);
            break;
        }
    }
}

bool rows_f32(const ggml_tensor * t) {
    return t->type == GGML_TYPE_F32 && t->nb[0] == sizeof(float) && t->ne[2] == 1 && t->ne[3] == 1;
}

// A SET_ROWS this kernel performs: F32 rows of a 2-D source into F16 or F32 rows, by I64 index.
bool job_of(const ggml_tensor * n, store_job & j) {
    const ggml_tensor *src = n->src[0], *idx = n->src[1];
    if (n->op != GGML_OP_SET_ROWS || !src || !idx || !rows_f32(src)) return false;
    if (n->type != GGML_TYPE_F16 && n->type != GGML_TYPE_F32) return false;
    if (n->nb[0] != ggml_type_size(n->type) || n->ne[0] != src->ne[0]) return false;
    if (idx->type != GGML_TYPE_I64 || !ggml_is_contiguous(idx) || idx->ne[0] != src->ne[1] || ggml_nrows(idx) != 1)
        return false;
    if ((src->nb[1] % 8) != 0 || (n->nb[1] % 4) != 0) return false; // pairs are 8- and 4-byte aligned
    j.src     = (const float *)src->data;
    j.dst     = (char *)n->data;
    j.idx     = (const int64_t *)idx->data;
    j.n_rows  = src->ne[1];
    j.src_nb1 = (int64_t)src->nb[1];
    j.dst_nb1 = (int64_t)n->nb[1];
    j.n_cols  = (int32_t)src->ne[0];
    j.f16     = n->type == GGML_TYPE_F16;
    return true;
}

bool overlaps(const ggml_tensor * a, const ggml_tensor * b) {
    const char *a0 = (const char *)a->data, *b0 = (const char *)b->data;
    return a0 < b0 + ggml_nbytes(b) && b0 < a0 + ggml_nbytes(a);
}

} // namespace

// Fuses, at node i, a linear surrogate's MUL_MAT (of one token or of a ubatch's) with the SET_ROWS that store its
// output and the SET_ROWS right after (views between them are no-ops), or two or more consecutive SET_ROWS. Returns
// the number of nodes after i that it performed (0: nothing fused, the node runs as usual).
int ggml_cuda_kvzap_try_fuse(ggml_backend_cuda_context & ctx, ggml_cgraph * cgraph, int i) {
    static const bool off = [] { // KVZAP_CUDA_FUSE=0: this fusion alone off (an A/B in one build)
        const char * e = getenv("KVZAP_CUDA_FUSE");
        return e != nullptr && atoi(e) == 0;
    }();
    if (off) return 0;
    const ggml_tensor * node = cgraph->nodes[i];
    store_args a             = {};
    a.dot_job                = -1;
    const ggml_tensor * mm   = nullptr;
    if (node->op == GGML_OP_MUL_MAT) {
        const ggml_tensor *w = node->src[0], *x = node->src[1];
        if (!rows_f32(w) || !rows_f32(x) || (x->nb[1] % 4) != 0 || !rows_f32(node) || node->ne[1] != x->ne[1] ||
            w->ne[0] != x->ne[0] || ggml_node_get_use_count(cgraph, i) != 1 ||
            (node->flags & GGML_TENSOR_FLAG_OUTPUT) || (w->nb[1] % 4) != 0) {
            return 0;
        }
        mm = node;
    } else if (node->op != GGML_OP_SET_ROWS) {
        return 0;
    }
    std::vector<const ggml_tensor *> fused;
    int last = i;
    for (int j = mm ? i + 1 : i; j < cgraph->n_nodes && a.n_jobs < MAX_JOBS; j++) {
        const ggml_tensor * n = cgraph->nodes[j];
        if (ggml_is_empty(n) || n->op == GGML_OP_RESHAPE || n->op == GGML_OP_VIEW || n->op == GGML_OP_PERMUTE ||
            n->op == GGML_OP_TRANSPOSE || n->op == GGML_OP_NONE) {
            continue;
        }
        store_job job;
        if ((n->flags & GGML_TENSOR_FLAG_COMPUTE) == 0 || !job_of(n, job)) break;
        // the matmul's one use must be the first store, of all its rows
        if (mm && a.n_jobs == 0 && (n->src[0] != mm || job.n_rows != mm->ne[1] || job.n_cols != mm->ne[0])) return 0;
        bool clash = false;
        for (const ggml_tensor * f : fused) clash = clash || overlaps(f, n->src[0]) || overlaps(n, f->src[0]);
        if (clash) break;
        fused.push_back(n);
        a.job[a.n_jobs++] = job;
        last              = j;
    }
    if (mm ? a.n_jobs < 1 : a.n_jobs < 2) return 0;
    if (mm) {
        a.dot_job      = 0;
        a.w            = (const float *)mm->src[0]->data;
        a.x            = (const float *)mm->src[1]->data;
        a.w_nb1        = (int64_t)mm->src[0]->nb[1];
        a.x_nb1        = (int64_t)mm->src[1]->nb[1];
        a.n_in         = (int32_t)mm->src[0]->ne[0];
        a.n_out        = (int32_t)mm->ne[0];
        a.dot_tokens   = (int32_t)mm->ne[1];
        a.n_dot_blocks = a.dot_tokens == 1 ? a.n_out : a.dot_tokens;
    }
    for (int jn = 0; jn < a.n_jobs; jn++) {
        if (jn != a.dot_job) a.n_pairs += a.job[jn].n_rows * ((a.job[jn].n_cols + 1) / 2);
    }
    const int64_t copy_blocks = std::min<int64_t>((a.n_pairs + STORE_THREADS - 1) / STORE_THREADS, 1024);
    const int n_blocks        = a.n_dot_blocks + (int)copy_blocks;
    if (n_blocks == 0) return last - i;
    ggml_cuda_kernel_launch(kvzap_store_kernel,
                            ggml_cuda_kernel_launch_params(n_blocks, STORE_THREADS, 0, ctx.stream()), a);
    return last - i;
}
