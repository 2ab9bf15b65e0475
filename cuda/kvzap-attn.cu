// CUDA kernels of GGML_OP_KVZAP_ATTN, append and compaction (see kvzap-attn.cuh for what they compute).
//
// Attention, per CTA: one KV head g, a tile of query rows of that head (row r = token * G + query head of the group),
// one chunk of the head's list. Tiles of KT list entries are gathered through the block table into shared memory
// with cp.async, two stages deep (loads of tile i + 1 fly while tile i is computed). Scores S = Q K^T and the output
// O += P V run on tensor cores (m16n8k16, f16 in, f32 out) with an online softmax in base 2; entries past what a row
// may see are masked, entries past the chunk are never read (so stale or unwritten pool rows cannot leak in).
// Decoding (one token, a group of at most 8 query heads) has kernels of its own with the MMA's operands swapped
// (kvzap-attn-decode.cuh): a warp-wise one, the default, and a CTA-wide one (KVZAP_DECODE_KERNEL=2 or 1 takes either
// for both types), 0 sends decoding through the general one.
#include "kvzap-attn.cuh"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <utility>

#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#    define KVZAP_TC 1 // mma.sync m16n8k16, ldmatrix and cp.async: Ampere and newer
#else
#    define KVZAP_TC 0
#endif

namespace {

constexpr int KT       = 64;  // list entries per tile
constexpr int NTHREADS = 128; // 4 warps
constexpr int PAD      = 8;   // halves of padding per shared row: 16 bytes, so ldmatrix rows fall in distinct banks
constexpr int QK8      = 32;  // values per q8_0 block
constexpr int Q8_BYTES = 34;  // f16 scale + 32 int8

struct q8_block {
    __half d;
    int8_t qs[QK8];
};
static_assert(sizeof(q8_block) == Q8_BYTES, "q8_0 block layout");

// Programmatic dependent launch (sm_90): a kernel launched with it may start while the one before it on the stream
// finishes; this waits until that one is done and its writes are visible (a no-op without PDL and before sm_90).
__device__ __forceinline__ void wait_prior_grid() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ uint32_t smem_addr(const void * p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

template <int N>
__device__ __forceinline__ void cp_async(void * s, const void * g) {
#if KVZAP_TC
    if constexpr (N == 16) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_addr(s)), "l"(g));
    } else {
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(smem_addr(s)), "l"(g), "n"(N));
    }
#endif
}

__device__ __forceinline__ void cp_async_commit() {
#if KVZAP_TC
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if KVZAP_TC
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void * p) {
#if KVZAP_TC
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
#endif
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void * p) {
#if KVZAP_TC
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
#endif
}

// c[16x8] += a[16x16] * b[16x8]
__device__ __forceinline__ void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#if KVZAP_TC
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, "
        "%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// c[16x8] += a[16x32] * b[32x8], int8 in, int32 out (exact)
__device__ __forceinline__ void mma_s8_16832(int c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#if KVZAP_TC
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, "
        "%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *(uint32_t *)&h;
}

struct attn_params {
    kvzap_attn_args a;
    int32_t G;     // query heads per KV head
    int32_t rows;  // query rows per KV head: n_tokens * G
    int32_t chunk; // list entries per split
    int32_t n_split;
    int32_t block_copy; // q8_0: whole blocks are 16-byte multiples and tiles hold whole blocks: copy blocks, not rows
    int32_t bs_log2;    // log2 of the block size when it is a power of two (-1: not)
    float * part_o;     // [n_split][n_head_kv][rows][dv]
    float * part_ml;    // [n_split][n_head_kv][rows][2]: running max (base 2) and sum
};

// Pipeline depth: two stages (one tile loads while one is computed). Measured on the H200 (decode, 128k keys, 8 KV
// heads): three stages for f16 and four for q8_0 took 187 and 201 us against 171 and 171 with two, because the larger
// CTAs fit two to a multiprocessor instead of three.
__host__ __device__ constexpr int attn_stages(bool /*q8*/, int /*nwr*/) {
    return 2;
}

template <int D, bool Q8>
struct attn_smem {
    static constexpr int ROW_H    = D + PAD;                         // halves per shared f16 row
    static constexpr int TILE_H   = KT * ROW_H;                      // halves per f16 tile (K or V)
    static constexpr int RAW_ROW  = Q8 ? D / QK8 * Q8_BYTES : 2 * D; // bytes per pool row
    static constexpr int RAW_TILE = KT * RAW_ROW;
    // one stage: the K and V tiles of f16, or their raw q8_0 rows
    static constexpr int STAGE = Q8 ? 2 * RAW_TILE : 2 * TILE_H * 2;
    // NST stages (q8_0: plus one dequantised K and V tile)
    __host__ __device__ static constexpr int stage_bytes(int nst) { return nst * STAGE + (Q8 ? 2 * TILE_H * 2 : 0); }
    static size_t bytes(int nst, int rows_per_cta) {
        return (size_t)stage_bytes(nst) + (size_t)rows_per_cta * ROW_H * 2 + 64 * sizeof(int);
    }
};

// The block-table index of list entry e, and the pool slot of e in block `id` (shifts where the block size is a
// power of two).
__device__ __forceinline__ int block_of(const attn_params & p, int e) {
    return p.bs_log2 >= 0 ? e >> p.bs_log2 : e / p.a.block_size;
}
__device__ __forceinline__ int slot_in(const attn_params & p, int id, int e) {
    return p.bs_log2 >= 0 ? (id << p.bs_log2) + (e & ((1 << p.bs_log2) - 1)) : id * p.a.block_size + e % p.a.block_size;
}

// Pool slot of list entry e of head g, or -1 past the chunk (such rows are zero-filled, never read).
__device__ __forceinline__ int slot_of(const attn_params & p, const int32_t * bt, int e, int e_end) {
    return e < e_end ? slot_in(p, __ldg(bt + block_of(p, e)), e) : -1;
}

// Whether a warp's R rows of a tile are always R contiguous rows of one pool block: blocks of whole tiles (block_copy)
// whose size is a multiple of R (a warp's rows start at a multiple of R).
__device__ __forceinline__ bool whole_block_rows(const attn_params & p, int R) {
    return p.block_copy && p.a.block_size % R == 0;
}

// f16, after load_rows' whole-block copy landed: the V rows past the chunk (slot < 0) become zeros, as the per-row copy
// leaves them (P is 0 there, but stale rows may hold anything, NaN too). By a warp, for its R rows.
template <int D, int R>
__device__ __forceinline__ void zero_rows_past(const int * sl, char * stage, int lane) {
    using L           = attn_smem<D, false>;
    constexpr int CPR = D / 8;
    __half * vs       = (__half *)stage + R * L::ROW_H;
    for (int c = lane; c < R * CPR; c += 32) {
        if (sl[c / CPR] < 0) *(int4 *)(vs + (c / CPR) * L::ROW_H + (c % CPR) * 8) = make_int4(0, 0, 0, 0);
    }
}

// Issues the loads of R rows of a tile into a stage laid out [K rows][V rows] (f16 rows of ROW_H halves, or raw q8_0
// rows), row r coming from pool slot sl[r] (zero-filled where sl[r] < 0), by the NTH threads tix = 0 .. NTH - 1: a
// whole tile by the CTA (load_tile), or a warp's own rows of it (the warp-wise decode kernel).
template <int D, bool Q8, int R, int NTH>
__device__ __forceinline__ void load_rows(const attn_params & p, const int * sl, char * stage, int tix) {
    using L                   = attn_smem<D, Q8>;
    const kvzap_attn_args & a = p.a;
    if constexpr (NTH == 32) {
        if (whole_block_rows(p, R)) {
            // a warp's R rows are R contiguous pool rows of one block (its first row's slot: the block's, or -1 when
            // the chunk ends before them): one base address and offsets the compiler knows. Rows past the chunk arrive
            // too (f16: zero_rows_past clears their V rows; q8_0: dequant_rows zeroes them)
            const int slot = sl[0];
            if (slot < 0) return;
            const char * kg = (const char *)a.k + (int64_t)slot * L::RAW_ROW;
            const char * vg = (const char *)a.v + (int64_t)slot * L::RAW_ROW;
            if constexpr (Q8) {
                constexpr int RAW_R = R * L::RAW_ROW, CPT = RAW_R / 16;
#pragma unroll
                for (int k = 0; k < (CPT + 31) / 32; k++) {
                    const int c = tix + 32 * k;
                    if (k < CPT / 32 || c < CPT) {
                        cp_async<16>(stage + c * 16, kg + c * 16);
                        cp_async<16>(stage + RAW_R + c * 16, vg + c * 16);
                    }
                }
            } else {
                constexpr int CPR = D / 8; // 16-byte chunks per row
                static_assert(32 % CPR == 0 && R * CPR % 32 == 0, "whole rows a pass of the warp");
                __half * ks = (__half *)stage;
                __half * vs = ks + R * L::ROW_H;
#pragma unroll
                for (int k = 0; k < R * CPR / 32; k++) {
                    const int r = tix / CPR + k * (32 / CPR), col = tix % CPR;
                    cp_async<16>(ks + r * L::ROW_H + col * 8, kg + (r * CPR + col) * 16);
                    cp_async<16>(vs + r * L::ROW_H + col * 8, vg + (r * CPR + col) * 16);
                }
            }
            return;
        }
    }
    if constexpr (!Q8) {
        __half * ks       = (__half *)stage;
        __half * vs       = ks + R * L::ROW_H;
        constexpr int CPR = D / 8; // 16-byte chunks per row
#pragma unroll
        for (int c = tix; c < 2 * R * CPR; c += NTH) {
            const int kv   = c / (R * CPR);
            const int r    = (c / CPR) % R;
            const int col  = c % CPR;
            __half * dst   = (kv ? vs : ks) + r * L::ROW_H + col * 8;
            const int slot = sl[r];
            if (slot >= 0) {
                const char * src = (const char *)(kv ? a.v : a.k) + (int64_t)slot * (kv ? a.v_row : a.k_row) + col * 16;
                cp_async<16>(dst, src);
            } else {
                *(int4 *)dst = make_int4(0, 0, 0, 0);
            }
        }
    } else {
        char * raw          = stage;
        constexpr int RAW_R = R * L::RAW_ROW; // bytes of the R raw rows of K (or V)
        if (p.block_copy) {
            // the rows are R / B whole blocks (or, B > R, R contiguous rows of one), each B rows of contiguous pool
            // memory: 16-byte copies of blocks whose first row is visible (rows past the chunk inside such a block
            // arrive too, and are zeroed by dequant_rows)
            constexpr int CPT        = RAW_R / 16; // 16-byte chunks per K (or V) part
            const unsigned blk_bytes = (unsigned)a.block_size * L::RAW_ROW;
            const bool one_block     = a.block_size % R == 0; // the R rows lie in one block: no division per chunk
#pragma unroll 3
            for (int c = tix; c < 2 * CPT; c += NTH) {
                const int kv       = c / CPT;
                const unsigned off = (unsigned)(c % CPT) * 16;
                const unsigned j   = one_block ? 0u : off / blk_bytes;
                const int slot     = sl[j * a.block_size];
                if (slot >= 0) {
                    const char * src =
                        (const char *)(kv ? a.v : a.k) + (int64_t)slot * L::RAW_ROW + (off - j * blk_bytes);
                    cp_async<16>(raw + kv * RAW_R + off, src);
                }
            }
            return;
        }
        // q8_0 rows (D / 32 * 34 bytes) are 4- or 8-byte aligned: copied in words of that size
        constexpr int W   = L::RAW_ROW % 16 == 0 ? 16 : (L::RAW_ROW % 8 == 0 ? 8 : 4);
        constexpr int CPR = L::RAW_ROW / W;
#pragma unroll 4
        for (int c = tix; c < 2 * R * CPR; c += NTH) {
            const int kv   = c / (R * CPR);
            const int r    = (c / CPR) % R;
            const int col  = c % CPR;
            char * dst     = raw + kv * RAW_R + r * L::RAW_ROW + col * W;
            const int slot = sl[r];
            if (slot >= 0) {
                const char * src = (const char *)(kv ? a.v : a.k) + (int64_t)slot * (kv ? a.v_row : a.k_row) + col * W;
                cp_async<W>(dst, src);
            } else if constexpr (W == 16) {
                *(int4 *)dst = make_int4(0, 0, 0, 0);
            } else if constexpr (W == 8) {
                *(int2 *)dst = make_int2(0, 0);
            } else {
                *(int *)dst = 0;
            }
        }
    }
}

// Issues the loads of one tile into a stage, by the whole CTA.
template <int D, bool Q8>
__device__ __forceinline__ void load_tile(const attn_params & p, const int * sl, char * stage) {
    load_rows<D, Q8, KT, NTHREADS>(p, sl, stage, threadIdx.x);
}

// q8_0: raw K and V tiles of a stage -> f16 tiles; rows whose slot is < 0 become zeros. A thread takes two adjacent
// 32-value blocks of a row (68 bytes, 4-byte aligned: 17 words), and builds halves without conversion instructions
// (a quarter-rate unit): the byte x ^ 0x80 under the exponent of 1024 is the half 1152 + x, exact, minus 1152, times
// the block's scale (one rounding, as q * d rounded to f16).
__device__ __forceinline__ uint32_t q4_to_half2(uint32_t q, __half2 d2, uint32_t sel) {
    const uint32_t w = __byte_perm(q ^ 0x80808080u, 0x64646464u, sel);
    __half2 h        = *(const __half2 *)&w;
    h                = __hmul2(__hsub2(h, __half2half2(__ushort_as_half(0x6480))), d2); // 0x6480 = 1152
    return *(const uint32_t *)&h;
}

// R raw q8_0 rows of K and of V ([K rows][V rows]) -> f16 rows of ROW_H halves, laid out the same, by the NTH
// threads tix = 0 .. NTH - 1. PART 0 or 1: only the K (or only the V) rows, into out's first R rows.
template <int D, int R, int NTH, int PART = -1>
__device__ __forceinline__ void dequant_rows(const char * raw, const int * sl, __half * out, int tix) {
    using L           = attn_smem<D, true>;
    constexpr int NP  = D / 64; // block pairs per row
    constexpr int NKV = PART < 0 ? 2 : 1;
    // one part of R rows a pass (a warp's V rows): row u % R, so that a quarter-warp's 16-byte stores fall in distinct
    // banks (rows of 17 chunks) as do its loads; else u / NP (a lane's loads 17 words apart)
    constexpr bool BY_ROW = NKV == 1 && R * NP <= NTH;
    for (int u = tix; u < NKV * R * NP; u += NTH) {
        const int pr = BY_ROW ? u / R : u % NP;
        const int r  = BY_ROW ? u % R : (u / NP) % R;
        const int kv = PART < 0 ? u / (NP * R) : PART;
        uint4 * o    = (uint4 *)(out + (PART < 0 ? kv : 0) * R * L::ROW_H + r * L::ROW_H + pr * 64);
        if (sl[r] < 0) {
#pragma unroll
            for (int i = 0; i < 8; i++) o[i] = make_uint4(0, 0, 0, 0);
            continue;
        }
        const uint32_t * w = (const uint32_t *)(raw + kv * R * L::RAW_ROW + r * L::RAW_ROW + pr * 2 * Q8_BYTES);
        uint32_t W[17];
#pragma unroll
        for (int i = 0; i < 17; i++) W[i] = w[i];
        const __half2 d0 = __half2half2(__ushort_as_half((unsigned short)(W[0] & 0xffff)));
        const __half2 d1 = __half2half2(__ushort_as_half((unsigned short)(W[8] >> 16)));
#pragma unroll
        for (int i = 0; i < 4; i++) { // first block: its values start 2 bytes into word 0
            const uint32_t qa = __funnelshift_r(W[2 * i], W[2 * i + 1], 16);
            const uint32_t qb = __funnelshift_r(W[2 * i + 1], W[2 * i + 2], 16);
            o[i] = make_uint4(q4_to_half2(qa, d0, 0x4140), q4_to_half2(qa, d0, 0x4342), q4_to_half2(qb, d0, 0x4140),
                              q4_to_half2(qb, d0, 0x4342));
        }
#pragma unroll
        for (int i = 0; i < 4; i++) { // second block: values in words 9..16
            const uint32_t qa = W[9 + 2 * i], qb = W[10 + 2 * i];
            o[4 + i] = make_uint4(q4_to_half2(qa, d1, 0x4140), q4_to_half2(qa, d1, 0x4342), q4_to_half2(qb, d1, 0x4140),
                                  q4_to_half2(qb, d1, 0x4342));
        }
    }
}

template <int D>
__device__ __forceinline__ void dequant_tile(const char * raw, const int * sl, __half * out) {
    dequant_rows<D, KT, NTHREADS>(raw, sl, out, threadIdx.x);
}

// ---- pieces both attention kernels start with ----

// The block ids of a chunk's first NST tiles, read before the head's length is known (both loads in flight at once,
// not one after the other): ids within the table's width; those past the chunk's end are masked by start_chunk.
// By the NTH threads tix of a group of R rows of each tile starting at list entry e_begin (R = KT: the CTA; a warp's
// rows: e_begin at its first row), thread tix for its row.
template <int NST, int R = KT>
__device__ __forceinline__ void read_first_ids(const attn_params & p, const int32_t * bt, int e_begin, int * ids,
                                               int tix = threadIdx.x) {
#pragma unroll
    for (int t = 0; t < NST; t++) {
        const int b = block_of(p, e_begin + t * KT + tix);
        ids[t]      = tix < R && b < p.a.nb_max ? __ldg(bt + b) : 0;
    }
}

// Starts a chunk [e_begin, e_end) of a head that held n_old entries before the ubatch: the slots of its first NST
// tiles (-1 past e_end) into slot_s, then the first NST - 1 tiles' loads (one commit group each, empty or not, so that
// the waits count tiles), and the wait for the kernel before this one (programmatic dependent launch). The loads go
// before that wait where they hold entries older than the ubatch only: those rows were written by earlier graphs;
// the ubatch's own rows and the queries come from the kernels before this one. Returns the chunk's tile count.
// By the whole CTA (R = KT rows a tile, stages of STAGE bytes), or by one warp for its own R rows of each tile,
// starting at entry r0 of the tile, into its own stages (NTH = 32: it synchronises with the warp only).
template <int D, bool Q8, int NST, int R = KT, int NTH = NTHREADS, int STAGE = attn_smem<D, Q8>::STAGE>
__device__ __forceinline__ int start_chunk(const attn_params & p, const int * ids, int e_begin, int e_end, int n_old,
                                           int (*slot_s)[R], char * stages, int r0 = 0, int tix = threadIdx.x) {
    if (tix < R) {
#pragma unroll
        for (int t = 0; t < NST; t++) {
            const int e    = e_begin + t * KT + r0 + tix;
            slot_s[t][tix] = e < e_end ? slot_in(p, ids[t], e) : -1;
        }
    }
    if constexpr (NTH == 32) {
        __syncwarp();
    } else {
        __syncthreads();
    }
    const int n_tiles = (e_end - e_begin + KT - 1) / KT;
    const bool early  = e_begin + (NST - 1) * KT <= n_old;
    if (!early) wait_prior_grid();
#pragma unroll
    for (int t = 0; t < NST - 1; t++) {
        if (t < n_tiles) load_rows<D, Q8, R, NTH>(p, slot_s[t], stages + t * STAGE, tix);
        cp_async_commit();
    }
    if (early) wait_prior_grid();
    return n_tiles;
}

// At the top of iteration `it` over a chunk's tiles: issues tile it + NST - 1 into the stage tile it - 1 left (its
// slots were stored last iteration; a commit group either way) and returns this thread's slot of tile it + NST, to be
// stored in tile it's row of slot_s once tile it is computed (the block-table read off the path to the next load).
template <int D, bool Q8, int NST>
__device__ __forceinline__ int advance_tiles(const attn_params & p, const int32_t * bt, int (*slot_s)[KT],
                                             char * stages, int it, int n_tiles, int e0, int e_end) {
    using L         = attn_smem<D, Q8>;
    const int ahead = it + NST - 1;
    if (ahead < n_tiles) load_tile<D, Q8>(p, slot_s[ahead % NST], stages + (ahead % NST) * L::STAGE);
    cp_async_commit();
    return threadIdx.x < KT ? slot_of(p, bt, e0 + NST * KT + threadIdx.x, e_end) : -1;
}

// Waits for tile `cur`'s loads (the NST - 1 tiles after it may still fly) and returns its f16 K rows, the V rows
// TILE_H halves after them; a q8_0 tile is dequantised into the stages' f16 buffer first.
template <int D, bool Q8, int NST>
__device__ __forceinline__ const __half * landed_tile(char * stages, int cur, const int * slots) {
    using L = attn_smem<D, Q8>;
    cp_async_wait<NST - 1>();
    __syncthreads();
    if constexpr (Q8) {
        __half * deq = (__half *)(stages + NST * L::STAGE);
        dequant_tile<D>(stages + cur * L::STAGE, slots, deq);
        __syncthreads();
        return deq;
    } else {
        return (const __half *)(stages + cur * L::STAGE);
    }
}

// Scales N accumulator fragments by the online softmax's correction, element c of each by f[c]; skipped (warp-wide)
// once no factor differs from 1, as it is once the running maxima settle.
template <int N>
__device__ __forceinline__ void rescale(float (&o)[N][4], float f0, float f1, float f2, float f3) {
    if (!__any_sync(0xffffffff, f0 != 1.0f || f1 != 1.0f || f2 != 1.0f || f3 != 1.0f)) return;
#pragma unroll
    for (int n = 0; n < N; n++) {
        o[n][0] *= f0;
        o[n][1] *= f1;
        o[n][2] *= f2;
        o[n][3] *= f3;
    }
}

// A chunk nothing of which is visible to rows [row0, row0 + rows): zero outputs (one split), or an empty partial.
__device__ __forceinline__ void empty_chunk(const attn_params & p, int g, int split, int row0, int rows, int D) {
    const kvzap_attn_args & a = p.a;
    wait_prior_grid(); // dst may reuse memory the kernel before this one still reads
    for (int i = threadIdx.x; i < rows * D; i += NTHREADS) {
        const int rg = row0 + i / D;
        if (rg >= p.rows) continue;
        if (p.n_split == 1) {
            const int t = rg / p.G, hq = g * p.G + rg % p.G;
            ((float *)((char *)a.dst + hq * a.dst_nb1 + t * a.dst_nb2))[i % D] = 0.0f;
        } else if (i % D == 0) {
            float * ml = p.part_ml + (((int64_t)split * a.n_head_kv + g) * p.rows + rg) * 2;
            ml[0]      = -INFINITY;
            ml[1]      = 0.0f;
        }
    }
}

// ---- pieces both attention kernels end with ----

// The softmax states of NW warps that saw different keys of the same rows, merged for row r at dims d and d + 1
// (os [NW][RW][D], ms and ls [NW][RW]).
template <int NW, int RW, int D>
__device__ __forceinline__ void merge_warp_states(const float * os, const float * ms, const float * ls, int r, int d,
                                                  float & m, float & l, float & v0, float & v1) {
    m = -INFINITY;
#pragma unroll
    for (int w = 0; w < NW; w++) m = fmaxf(m, ms[w * RW + r]);
    l = v0 = v1 = 0.0f;
    if (m == -INFINITY) return;
#pragma unroll
    for (int w = 0; w < NW; w++) {
        const float mw = ms[w * RW + r];
        if (mw == -INFINITY) continue;
        const float f = exp2f(mw - m);
        l += f * ls[w * RW + r];
        v0 += f * os[(w * RW + r) * D + d];
        v1 += f * os[(w * RW + r) * D + d + 1];
    }
}

// Writes row rg's result at dims d and d + 1: normalised into dst (one split), or this split's partial.
template <int D>
__device__ __forceinline__ void emit_row(const attn_params & p, int g, int split, int rg, int d, float v0, float v1,
                                         float m, float l) {
    if (rg >= p.rows) return;
    const kvzap_attn_args & a = p.a;
    if (p.n_split == 1) {
        const int t = rg / p.G, hq = g * p.G + rg % p.G;
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        float * out     = (float *)((char *)a.dst + hq * a.dst_nb1 + t * a.dst_nb2) + d;
        out[0]          = v0 * inv;
        out[1]          = v1 * inv;
    } else {
        const int64_t row         = ((int64_t)split * a.n_head_kv + g) * p.rows + rg;
        p.part_o[row * D + d]     = v0;
        p.part_o[row * D + d + 1] = v1;
        if (d == 0) {
            p.part_ml[row * 2]     = m;
            p.part_ml[row * 2 + 1] = l;
        }
    }
}

// NWR warps along query rows (16 each) times NWK warps along each tile's keys.
template <int D, bool Q8, int NWR, int NWK>
__global__ void __launch_bounds__(NTHREADS) kvzap_attn_kernel(const attn_params p) {
#if KVZAP_TC
    static_assert(NWR * NWK == NTHREADS / 32, "4 warps");
    using L            = attn_smem<D, Q8>;
    constexpr int NST  = attn_stages(Q8, NWR);
    constexpr int ROWS = 16 * NWR;
    // the warps' partial results are merged through the stages' memory
    static_assert(NWK == 1 || L::stage_bytes(NST) >= NWK * 16 * (D + 2) * 4, "merge scratch");
    constexpr int NK = KT / NWK; // keys of a tile per warp
    constexpr int NJ = NK / 8;   // score n-tiles per warp
    constexpr int ND = D / 8;    // output n-tiles

    extern __shared__ __align__(16) char smem[];
    char * stages = smem;
    __half * qs   = (__half *)(smem + L::stage_bytes(NST));
    int * lim_s   = (int *)(qs + ROWS * L::ROW_H);

    const kvzap_attn_args & a = p.a;
    const int g               = blockIdx.y;
    const int split           = blockIdx.z;
    const int row0            = blockIdx.x * ROWS;
    const int tid             = threadIdx.x;
    const int warp = tid / 32, lane = tid % 32;
    const int wr = warp / NWK, wk = warp % NWK;

    // The block ids of the first tiles are read before the head's length is known (both loads in flight at once, not
    // one after the other): ids within the table's width, those past the chunk's end masked below.
    const int32_t * bt = a.block_table + (int64_t)g * a.bt_stride;
    int first_ids[NST];
    read_first_ids<NST>(p, bt, split * p.chunk, first_ids);
    // what each row sees: every older entry, and the ubatch's own entries up to its position. A single token sees
    // all of them: no position reads and no synchronisation before the first loads (decoding's critical path).
    const int n_old = a.n_old[g];
    __shared__ int tile_lim;
    if (a.n_tokens == 1) {
        // rows past the query rows (padding of the MMA tile) see what the others see: they are computed (from zero
        // queries: finite) and never written, and so no tile short of the chunk's end needs a mask
        if (tid < ROWS) lim_s[tid] = n_old + 1;
    } else {
        if (tid == 0) tile_lim = 0;
        __syncthreads();
        if (tid < ROWS) {
            const int rg = row0 + tid;
            int lim      = 0;
            if (rg < p.rows) {
                const int t      = rg / p.G;
                const int32_t pt = a.pos[t];
                int cnt          = 0;
                for (int j = 0; j < a.n_tokens; j++) cnt += a.pos[j] <= pt;
                lim = n_old + cnt;
                atomicMax(&tile_lim, lim);
            }
            lim_s[tid] = lim;
        }
        __syncthreads();
    }
    const int e_begin = split * p.chunk;
    const int e_end   = min(e_begin + p.chunk, a.n_tokens == 1 ? n_old + 1 : tile_lim);

    if (e_begin >= e_end) { // nothing of this chunk is visible to these rows
        empty_chunk(p, g, split, row0, ROWS, D);
        return;
    }

    // The slots of each tile's rows go through a shared table filled one tile ahead, so that the block-table reads
    // are off the path from one tile's loads to the next.
    // Tile t's slots are in slot_s[t % NST] and its rows in stage t % NST; NST - 1 tiles load while one is computed.
    __shared__ int slot_s[NST][KT];
    const int n_tiles = start_chunk<D, Q8, NST>(p, first_ids, e_begin, e_end, n_old, slot_s, stages);

    // the queries, as f16, then held in registers as A fragments
    for (int i = tid; i < ROWS * D; i += NTHREADS) {
        const int r = i / D, d = i % D;
        const int rg = row0 + r;
        float x      = 0.0f;
        if (rg < p.rows) {
            const int t = rg / p.G, hq = g * p.G + rg % p.G;
            x = ((const float *)((const char *)a.q + hq * a.q_nb1 + t * a.q_nb2))[d];
        }
        qs[r * L::ROW_H + d] = __float2half_rn(x);
    }
    __syncthreads();
    uint32_t qa[D / 16][4];
#    pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        const int mi = lane / 8;
        ldmatrix_x4(qa[kk], qs + (wr * 16 + (mi & 1) * 8 + lane % 8) * L::ROW_H + kk * 16 + (mi >> 1) * 8);
    }

    const float scale2 = a.scale * 1.4426950408889634f; // softmax in base 2
    const int ra       = wr * 16 + lane / 4;
    // padding rows (past the query rows) see the whole chunk: computed from zero queries, never written
    const int lim_a = row0 + ra < p.rows ? min(lim_s[ra], e_end) : e_end;
    const int lim_b = row0 + ra + 8 < p.rows ? min(lim_s[ra + 8], e_end) : e_end;
    // below every row's limit no entry is masked: tiles that end there skip the mask (a warp-wide value)
    int lim_min = min(lim_a, lim_b);
#    pragma unroll
    for (int o = 16; o > 0; o >>= 1) lim_min = min(lim_min, __shfl_xor_sync(0xffffffff, lim_min, o));
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;
    float o[ND][4];
#    pragma unroll
    for (int n = 0; n < ND; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;

    for (int it = 0; it < n_tiles; it++) {
        const int e0        = e_begin + it * KT;
        const int cur       = it % NST;
        const int next_slot = advance_tiles<D, Q8, NST>(p, bt, slot_s, stages, it, n_tiles, e0, e_end);
        const __half * ks   = landed_tile<D, Q8, NST>(stages, cur, slot_s[cur]); // tile it has landed
        const __half * vs   = ks + L::TILE_H;
        const int kbase     = wk * NK; // this warp's keys within the tile

        float s[NJ][4];
#    pragma unroll
        for (int j = 0; j < NJ; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#    pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
#    pragma unroll
            for (int j = 0; j < NJ; j += 2) {
                const int mi = lane / 8;
                uint32_t b[4];
                ldmatrix_x4(b, ks + (kbase + (j + (mi >> 1)) * 8 + lane % 8) * L::ROW_H + kk * 16 + (mi & 1) * 8);
                mma_16816(s[j], qa[kk], b[0], b[1]);
                mma_16816(s[j + 1], qa[kk], b[2], b[3]);
            }
        }

        // mask, running max, probabilities
        float mx_a = -INFINITY, mx_b = -INFINITY;
        if (e0 + KT > lim_min) {
#    pragma unroll
            for (int j = 0; j < NJ; j++) {
#    pragma unroll
                for (int c = 0; c < 4; c++) {
                    const int e    = e0 + kbase + j * 8 + (lane % 4) * 2 + (c & 1);
                    const bool vis = e < (c < 2 ? lim_a : lim_b);
                    s[j][c]        = vis ? s[j][c] * scale2 : -INFINITY;
                }
            }
        } else {
#    pragma unroll
            for (int j = 0; j < NJ; j++) {
#    pragma unroll
                for (int c = 0; c < 4; c++) s[j][c] *= scale2;
            }
        }
#    pragma unroll
        for (int j = 0; j < NJ; j++) {
            mx_a = fmaxf(mx_a, fmaxf(s[j][0], s[j][1]));
            mx_b = fmaxf(mx_b, fmaxf(s[j][2], s[j][3]));
        }
        mx_a             = fmaxf(mx_a, __shfl_xor_sync(0xffffffff, mx_a, 1));
        mx_a             = fmaxf(mx_a, __shfl_xor_sync(0xffffffff, mx_a, 2));
        mx_b             = fmaxf(mx_b, __shfl_xor_sync(0xffffffff, mx_b, 1));
        mx_b             = fmaxf(mx_b, __shfl_xor_sync(0xffffffff, mx_b, 2));
        const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
        const float base_a = mn_a == -INFINITY ? 0.0f : mn_a, base_b = mn_b == -INFINITY ? 0.0f : mn_b;
        const float corr_a = exp2f(m_a - base_a), corr_b = exp2f(m_b - base_b);
        m_a         = mn_a;
        m_b         = mn_b;
        float sum_a = 0.0f, sum_b = 0.0f;
#    pragma unroll
        for (int j = 0; j < NJ; j++) {
            s[j][0] = exp2f(s[j][0] - base_a);
            s[j][1] = exp2f(s[j][1] - base_a);
            s[j][2] = exp2f(s[j][2] - base_b);
            s[j][3] = exp2f(s[j][3] - base_b);
            sum_a += s[j][0] + s[j][1];
            sum_b += s[j][2] + s[j][3];
        }
        l_a = l_a * corr_a + sum_a;
        l_b = l_b * corr_b + sum_b;
        rescale(o, corr_a, corr_a, corr_b, corr_b); // rows a (elements 0, 1) and b (2, 3)

        // O += P V: the score accumulators of two n-tiles are the A fragment of one k-step of 16 keys
#    pragma unroll
        for (int kk = 0; kk < NK / 16; kk++) {
            uint32_t pa[4];
            pa[0] = pack_half2(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = pack_half2(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = pack_half2(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = pack_half2(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#    pragma unroll
            for (int n = 0; n < ND; n += 2) {
                const int mi = lane / 8;
                uint32_t b[4];
                ldmatrix_x4_trans(b,
                                  vs + (kbase + kk * 16 + (mi & 1) * 8 + lane % 8) * L::ROW_H + n * 8 + (mi >> 1) * 8);
                mma_16816(o[n], pa, b[0], b[1]);
                mma_16816(o[n + 1], pa, b[2], b[3]);
            }
        }
        if (tid < KT) slot_s[cur][tid] = next_slot;
        __syncthreads(); // the stage computed here is the one loaded next
    }

    l_a += __shfl_xor_sync(0xffffffff, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffff, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffff, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffff, l_b, 2);

    const auto emit = [&](int rg, int d, float v0, float v1, float m, float l) {
        emit_row<D>(p, g, split, rg, d, v0, v1, m, l);
    };

    if constexpr (NWK == 1) {
#    pragma unroll
        for (int n = 0; n < ND; n++) {
            const int d = n * 8 + (lane % 4) * 2;
            emit(row0 + ra, d, o[n][0], o[n][1], m_a, l_a);
            emit(row0 + ra + 8, d, o[n][2], o[n][3], m_b, l_b);
        }
    } else {
        // the warps saw different keys of the same 16 rows: merge their softmax states through shared memory
        float * os = (float *)stages;   // [NWK][16][D]
        float * ms = os + NWK * 16 * D; // [NWK][16]
        float * ls = ms + NWK * 16;     // [NWK][16]
#    pragma unroll
        for (int n = 0; n < ND; n++) {
            const int d   = n * 8 + (lane % 4) * 2;
            float * oa    = os + (wk * 16 + lane / 4) * D + d;
            oa[0]         = o[n][0];
            oa[1]         = o[n][1];
            oa[8 * D]     = o[n][2];
            oa[8 * D + 1] = o[n][3];
        }
        if (lane % 4 == 0) {
            ms[wk * 16 + lane / 4]     = m_a;
            ms[wk * 16 + lane / 4 + 8] = m_b;
            ls[wk * 16 + lane / 4]     = l_a;
            ls[wk * 16 + lane / 4 + 8] = l_b;
        }
        __syncthreads();
        for (int i = tid; i < 16 * D / 2; i += NTHREADS) {
            const int r = i / (D / 2), d = (i % (D / 2)) * 2;
            float m, l, v0, v1;
            merge_warp_states<NWK, 16, D>(os, ms, ls, r, d, m, l, v0, v1);
            emit(row0 + r, d, v0, v1, m, l);
        }
    }
#endif
}

// the decode kernel (one token, a group of at most 8 query heads), on the helpers above
#include "kvzap-attn-decode.cuh"

// Merges the n_split partial softmaxes of each row: one CTA per (KV head, row). MERGE_THREADS / (D / 4) groups of D / 4
// threads take every group-th split, 16 bytes of its output a load: the outputs of a thread's first MERGE_UNROLL splits
// are loaded at once with the splits' maxima and weights (a split per thread), so that a merge of up to
// MERGE_UNROLL * groups splits waits on one round trip to L2, not one for the maxima, one for the weights and more for
// the outputs. An empty chunk (max -inf) has weight 0; its output, never written, is loaded but never used.
constexpr int MERGE_THREADS = 256;
constexpr int MERGE_UNROLL  = 8;

__device__ __forceinline__ float block_reduce(float x, float * red, bool is_max) {
    for (int o = 16; o > 0; o >>= 1) {
        const float y = __shfl_xor_sync(0xffffffff, x, o);
        x             = is_max ? fmaxf(x, y) : x + y;
    }
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    __syncthreads();
    x = red[0];
    for (int w = 1; w < MERGE_THREADS / 32; w++) x = is_max ? fmaxf(x, red[w]) : x + red[w];
    __syncthreads(); // red is reused by the next reduction
    return x;
}

__device__ __forceinline__ void add_scaled(float4 & v, float f, const float4 & x) {
    v.x += f * x.x;
    v.y += f * x.y;
    v.z += f * x.z;
    v.w += f * x.w;
}

__global__ void __launch_bounds__(MERGE_THREADS) kvzap_attn_merge(const attn_params p, int D) {
    extern __shared__ float4 merge_smem[]; // [MERGE_THREADS] partial sums, then [n_split] weights
    __shared__ float red[MERGE_THREADS / 32];
    float4 * sums             = merge_smem;
    float * wsplit            = (float *)(merge_smem + MERGE_THREADS);
    const kvzap_attn_args & a = p.a;
    const int g = blockIdx.y, rg = blockIdx.x, tid = threadIdx.x;
    const int lanes  = D / 4;
    const int groups = MERGE_THREADS / lanes, grp = tid / lanes, c = tid % lanes;
    wait_prior_grid(); // the partial results are the attention kernel's
    const int64_t row0   = (int64_t)g * p.rows + rg;
    const int64_t stride = (int64_t)a.n_head_kv * p.rows; // between splits of one row
    const float4 * po    = (const float4 *)(p.part_o + row0 * D) + c;
    const int64_t pstep  = stride * D / 4; // float4s between splits
    float4 x[MERGE_UNROLL];
#pragma unroll
    for (int k = 0; k < MERGE_UNROLL; k++) {
        const int s = grp + k * groups;
        x[k]        = s < p.n_split ? po[s * pstep] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    const float2 ml0 =
        tid < p.n_split ? *(const float2 *)(p.part_ml + (row0 + tid * stride) * 2) : make_float2(-INFINITY, 0.0f);
    float m = ml0.x;
    for (int s = tid + MERGE_THREADS; s < p.n_split; s += MERGE_THREADS)
        m = fmaxf(m, p.part_ml[(row0 + s * stride) * 2]);
    m       = block_reduce(m, red, true);
    float l = 0.0f;
    for (int s = tid; s < p.n_split; s += MERGE_THREADS) {
        const float2 ml = s == tid ? ml0 : *(const float2 *)(p.part_ml + (row0 + s * stride) * 2);
        const float f   = m != -INFINITY && ml.x != -INFINITY ? exp2f(ml.x - m) : 0.0f;
        wsplit[s]       = f;
        l += f != 0.0f ? f * ml.y : 0.0f;
    }
    l        = block_reduce(l, red, false); // also makes wsplit visible to every thread
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int k = 0; k < MERGE_UNROLL; k++) {
        const int s = grp + k * groups;
        if (s < p.n_split && wsplit[s] != 0.0f) add_scaled(v, wsplit[s], x[k]);
    }
#pragma unroll 4
    for (int s = grp + MERGE_UNROLL * groups; s < p.n_split; s += groups) {
        const float f = wsplit[s];
        if (f != 0.0f) add_scaled(v, f, po[s * pstep]);
    }
    sums[tid] = v;
    __syncthreads();
    if (tid < lanes) {
        for (int k = 1; k < groups; k++) {
            const float4 y = sums[k * lanes + tid];
            v.x += y.x;
            v.y += y.y;
            v.z += y.z;
            v.w += y.w;
        }
        const int t = rg / p.G, hq = g * p.G + rg % p.G;
        float * out     = (float *)((char *)a.dst + hq * a.dst_nb1 + t * a.dst_nb2) + 4 * tid;
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        out[0]          = v.x * inv;
        out[1]          = v.y * inv;
        out[2]          = v.z * inv;
        out[3]          = v.w * inv;
    }
}

// A decode kernel: the CTA-wide one (kvzap_attn_decode_kernel) or the warp-wise one (kvzap_attn_decode_warp_kernel).
template <int D, bool Q8, bool WARP>
void (*decode_kernel())(attn_params) {
    if constexpr (WARP) {
        return kvzap_attn_decode_warp_kernel<D, Q8>;
    } else {
        return kvzap_attn_decode_kernel<D, Q8>;
    }
}

// A decode kernel's shared memory: the stages, 8 query rows, each warp's P^T tile.
template <int D, bool Q8, bool WARP>
constexpr size_t decode_smem_bytes() {
    const size_t stages = WARP ? (size_t)DEC_NW * decode_warp_smem<D, Q8>::PER_WARP
                               : (size_t)attn_smem<D, Q8>::stage_bytes(attn_stages(Q8, 1));
    return stages + 8 * attn_smem<D, Q8>::ROW_H * 2 + DEC_NW * 8 * DEC_PS * 2;
}

template <int D, bool Q8, bool WARP>
cudaError_t configure_decode(int * per_sm) {
    static int fit = 0;
    if (fit == 0) {
        const size_t smem = decode_smem_bytes<D, Q8, WARP>();
        cudaError_t e =
            cudaFuncSetAttribute(decode_kernel<D, Q8, WARP>(), cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e == cudaSuccess)
            e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, decode_kernel<D, Q8, WARP>(), NTHREADS, smem);
        if (e != cudaSuccess) return e;
    }
    if (per_sm) *per_sm = std::max(fit, 1);
    return cudaSuccess;
}

// Raises the kernel's shared-memory limit (once per instantiation) and says how many of its CTAs fit on one
// multiprocessor.
template <int D, bool Q8, int NWR, int NWK>
cudaError_t configure_attn(int * per_sm) {
    const size_t smem = attn_smem<D, Q8>::bytes(attn_stages(Q8, NWR), 16 * NWR);
    static int fit    = 0;
    if (fit == 0) {
        cudaError_t e = cudaFuncSetAttribute(kvzap_attn_kernel<D, Q8, NWR, NWK>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e == cudaSuccess)
            e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, kvzap_attn_kernel<D, Q8, NWR, NWK>, NTHREADS, smem);
        if (e != cudaSuccess) return e;
    }
    if (per_sm) *per_sm = std::max(fit, 1);
    return cudaSuccess;
}

// Launches with programmatic dependent launch where the device has it (sm_90 and newer; GGML_CUDA_PDL=0 turns it off
// as it does ggml's): the kernel's CTAs are placed while the kernel before it finishes, and wait for it in
// wait_prior_grid() (ggml's kernels, launched the same way after these, wait for these to end).
template <typename... Params, typename... Args>
cudaError_t launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                       Args &&... args) {
    static const bool env_on = [] {
        const char * e = getenv("GGML_CUDA_PDL");
        return e == nullptr || atoi(e) != 0;
    }();
    static int major_of[64] = {}; // compute capability major per device, asked once (0: not yet)
    int dev                 = 0;
    if (env_on && cudaGetDevice(&dev) == cudaSuccess && dev < 64 && major_of[dev] == 0 &&
        cudaDeviceGetAttribute(&major_of[dev], cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        major_of[dev] = -1;
    }
    if (env_on && dev < 64 && major_of[dev] >= 9) {
        cudaLaunchAttribute attr                        = {};
        attr.id                                         = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr.val.programmaticStreamSerializationAllowed = 1;
        cudaLaunchConfig_t cfg                          = {};
        cfg.gridDim                                     = grid;
        cfg.blockDim                                    = block;
        cfg.dynamicSmemBytes                            = smem;
        cfg.stream                                      = stream;
        cfg.attrs                                       = &attr;
        cfg.numAttrs                                    = 1;
        return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
    }
    kernel<<<grid, block, smem, stream>>>(std::forward<Args>(args)...);
    return cudaGetLastError();
}

// Experiments on the cost of switching shared-memory carveouts between the attention kernel (three CTAs of 74 KB an
// SM) and the kernels around it, which need little shared memory (unset: the driver's choices):
//   KVZAP_CARVEOUT=N (percent): the merge kernel's preferred carveout;
//   KVZAP_CUDA_PREFER_SHARED=1: the device-wide preference for shared memory (cudaDeviceSetCacheConfig), which every
//   kernel of the process without a preference of its own follows, ggml's too.
static cudaError_t configure_carveouts() {
    static const int carveout = [] {
        const char * e = getenv("KVZAP_CARVEOUT");
        return e != nullptr && *e ? atoi(e) : -1;
    }();
    static const bool prefer_shared = [] {
        const char * e = getenv("KVZAP_CUDA_PREFER_SHARED");
        return e != nullptr && atoi(e) != 0;
    }();
    static bool done = false;
    if (done) return cudaSuccess;
    done          = true;
    cudaError_t e = cudaSuccess;
    if (prefer_shared) e = cudaDeviceSetCacheConfig(cudaFuncCachePreferShared);
    if (e == cudaSuccess && carveout >= 0)
        e = cudaFuncSetAttribute(kvzap_attn_merge, cudaFuncAttributePreferredSharedMemoryCarveout, carveout);
    return e;
}

template <int D, bool Q8, int NWR, int NWK>
cudaError_t launch_attn(const attn_params & p, dim3 grid, cudaStream_t stream) {
    cudaError_t e = configure_attn<D, Q8, NWR, NWK>(nullptr);
    if (e != cudaSuccess) return e;
    return launch_pdl(kvzap_attn_kernel<D, Q8, NWR, NWK>, grid, dim3(NTHREADS),
                      attn_smem<D, Q8>::bytes(attn_stages(Q8, NWR), 16 * NWR), stream, p);
}

template <int D, bool Q8, bool WARP>
cudaError_t launch_decode(const attn_params & p, dim3 grid, cudaStream_t stream) {
    cudaError_t e = configure_decode<D, Q8, WARP>(nullptr);
    if (e != cudaSuccess) return e;
    return launch_pdl(decode_kernel<D, Q8, WARP>(), grid, dim3(NTHREADS), decode_smem_bytes<D, Q8, WARP>(), stream, p);
}

// Which kernel decodes one token of a group of at most 8 query heads (KVZAP_DECODE_KERNEL): 2 the warp-wise one (the
// default: on the H200 in graphs f16 26.7 / 78.0 / 145.4 us at 16k / 64k / 128k keys against the CTA-wide kernel's
// 27.5 / 78.3 / 148.2, q8_0 145.5 against 150.1 at 128k; q8_0 three stages a warp), 1 the CTA-wide decode kernel, 0
// the general kernel; -1: not such a call.
static int decode_kernel_of(const kvzap_attn_args & a) {
    static const int choice = [] {
        const char * e = getenv("KVZAP_DECODE_KERNEL");
        return e == nullptr || *e == 0 ? -1 : std::min(std::max(atoi(e), 0), 2);
    }();
    const int k = choice >= 0 ? choice : 2;
    return a.n_tokens == 1 && a.n_head / a.n_head_kv <= 8 && k > 0 ? k : -1;
}

template <int D, bool Q8>
cudaError_t launch_attn_shape(const attn_params & p, int rows_per_cta, dim3 grid, cudaStream_t stream) {
    const int dec = decode_kernel_of(p.a);
    if (dec > 0)
        return dec == 2 ? launch_decode<D, Q8, true>(p, grid, stream) : launch_decode<D, Q8, false>(p, grid, stream);
    return rows_per_cta == 16 ? launch_attn<D, Q8, 1, 4>(p, grid, stream) : launch_attn<D, Q8, 4, 1>(p, grid, stream);
}

template <int D, bool Q8>
int decode_per_sm(bool warp) {
    int n = 1;
    warp ? configure_decode<D, Q8, true>(&n) : configure_decode<D, Q8, false>(&n);
    return n;
}

static int attn_per_sm(const kvzap_attn_args & a, int rows_per_cta) {
    int n         = 1;
    const bool q8 = a.type == KVZAP_KV_Q8_0, dec = rows_per_cta == 16;
    if (const int k = decode_kernel_of(a); k > 0) {
        if (a.dk == 64) return q8 ? decode_per_sm<64, true>(k == 2) : decode_per_sm<64, false>(k == 2);
        if (a.dk == 128) return q8 ? decode_per_sm<128, true>(k == 2) : decode_per_sm<128, false>(k == 2);
        return n;
    }
    if (a.dk == 64) {
        q8 ? (dec ? configure_attn<64, true, 1, 4>(&n) : configure_attn<64, true, 4, 1>(&n))
           : (dec ? configure_attn<64, false, 1, 4>(&n) : configure_attn<64, false, 4, 1>(&n));
    } else if (a.dk == 128) {
        q8 ? (dec ? configure_attn<128, true, 1, 4>(&n) : configure_attn<128, true, 4, 1>(&n))
           : (dec ? configure_attn<128, false, 1, 4>(&n) : configure_attn<128, false, 4, 1>(&n));
    }
    return n;
}

// ---- append and compaction ----

// One warp per (row, 32 values): f16 rows, or one q8_0 block (the scale of the block's largest magnitude over 127,
// values rounded to nearest, as ggml quantises q8_0).
__global__ void kvzap_append_kernel(const float * src, int64_t src_nb1, int64_t n_rows, int32_t d,
                                    const int64_t * slots, char * pool, int64_t row_bytes, kvzap_kv_type type) {
    const int64_t nb = d / QK8;
    const int64_t w  = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    const int lane   = threadIdx.x % 32;
    if (w >= n_rows * nb) return;
    const int64_t r = w / nb, b = w % nb;
    const float x = ((const float *)((const char *)src + r * src_nb1))[b * QK8 + lane];
    char * row    = pool + slots[r] * row_bytes;
    if (type == KVZAP_KV_F16) {
        ((__half *)row)[b * QK8 + lane] = __float2half_rn(x);
        return;
    }
    float amax = fabsf(x);
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffff, amax, o));
    const float dq = amax / 127.0f;
    const float id = dq != 0.0f ? 1.0f / dq : 0.0f;
    char * blk     = row + b * Q8_BYTES;
    blk[2 + lane]  = (int8_t)roundf(x * id);
    if (lane == 0) *(__half *)blk = __float2half_rn(dq);
}

// Moves: phase 0 gathers every source row into scratch, phase 1 scatters them (both pools, 4-byte words).
__global__ void kvzap_moves_kernel(char * k_pool, char * v_pool, int64_t k_row, int64_t v_row,
                                   const kvzap_row_move * moves, char * scratch, int phase) {
    const int64_t i        = blockIdx.x;
    const kvzap_row_move m = moves[i];
    const int64_t kw = k_row / 4, vw = v_row / 4;
    int * st = (int *)(scratch + i * (k_row + v_row));
    for (int64_t j = threadIdx.x; j < kw + vw; j += blockDim.x) {
        int * row = j < kw ? (int *)(k_pool + (phase ? m.dst : m.src) * k_row) + j
                           : (int *)(v_pool + (phase ? m.dst : m.src) * v_row) + (j - kw);
        if (phase == 0) {
            st[j] = *row;
        } else {
            *row = st[j];
        }
    }
}

// Moves without overlap: each block copies one move's K and V rows (4-byte words) from its source to its destination.
__global__ void kvzap_moves_direct_kernel(char * k_pool, char * v_pool, int64_t k_row, int64_t v_row,
                                          const kvzap_row_move * moves) {
    const kvzap_row_move m = moves[blockIdx.x];
    const int64_t kw = k_row / 4, vw = v_row / 4;
    for (int64_t j = threadIdx.x; j < kw + vw; j += blockDim.x) {
        if (j < kw) {
            ((int *)(k_pool + m.dst * k_row))[j] = ((const int *)(k_pool + m.src * k_row))[j];
        } else {
            ((int *)(v_pool + m.dst * v_row))[j - kw] = ((const int *)(v_pool + m.src * v_row))[j - kw];
        }
    }
}

} // namespace

size_t kvzap_kv_row_bytes(kvzap_kv_type type, int32_t d) {
    return type == KVZAP_KV_F16 ? (size_t)d * 2 : (size_t)d / QK8 * Q8_BYTES;
}

bool kvzap_attn_supported(int cc, kvzap_kv_type type, int32_t dk, int32_t dv) {
    return cc >= 80 && dk == dv && (dk == 64 || dk == 128) && (type == KVZAP_KV_F16 || type == KVZAP_KV_Q8_0);
}

kvzap_attn_plan kvzap_attn_make_plan(const kvzap_attn_args & a, int n_sm) {
    kvzap_attn_plan plan    = {};
    const int64_t rows      = (int64_t)a.n_tokens * (a.n_head / a.n_head_kv);
    plan.rows_per_cta       = rows <= 16 ? 16 : 64;
    const int64_t row_tiles = (rows + plan.rows_per_cta - 1) / plan.rows_per_cta;
    const int64_t max_len   = std::max<int64_t>(1, (int64_t)a.nb_max * a.block_size);
    const int64_t total     = a.total_len > 0 ? a.total_len : max_len * a.n_head_kv;
    // one wave of CTAs with work; each chunk at least 2 tiles (short heads: more CTAs, each with a shorter chain of
    // dependent tile loads, against a larger merge; 2 tiles measured best at 4k keys, 1 would leave a CTA's second
    // stage idle)
    const int64_t slots   = (int64_t)std::max(n_sm, 1) * attn_per_sm(a, plan.rows_per_cta);
    int64_t chunk         = (row_tiles * total + slots - 1) / slots;
    chunk                 = std::max<int64_t>(2 * KT, (chunk + KT - 1) / KT * KT);
    const int64_t n_split = (max_len + chunk - 1) / chunk;
    plan.n_split          = (int32_t)n_split;
    plan.chunk            = (int32_t)(n_split == 1 ? max_len : chunk);
    plan.workspace_bytes  = n_split > 1 ? (size_t)n_split * a.n_head_kv * rows * (a.dv + 2) * sizeof(float) : 0;
    return plan;
}

cudaError_t kvzap_attn_cuda(const kvzap_attn_args & a, const kvzap_attn_plan & plan, void * workspace,
                            cudaStream_t stream) {
    if (a.n_tokens <= 0 || a.n_head_kv <= 0) return cudaSuccess;
    if (a.dk != a.dv || (a.dk != 64 && a.dk != 128) || a.n_head % a.n_head_kv != 0) return cudaErrorInvalidValue;
    if (plan.n_split > 1 && !workspace) return cudaErrorInvalidValue;
    if (cudaError_t e = configure_carveouts(); e != cudaSuccess) return e;
    attn_params p = {};
    p.a           = a;
    p.G           = a.n_head / a.n_head_kv;
    p.rows        = a.n_tokens * p.G;
    p.chunk       = plan.chunk;
    p.n_split     = plan.n_split;
    p.bs_log2     = -1;
    for (int b = 0; b < 31; b++) {
        if ((1 << b) == a.block_size) p.bs_log2 = b;
    }
    p.block_copy = KT % a.block_size == 0 && (int64_t)a.block_size * a.k_row % 16 == 0 &&
                   a.k_row == (int64_t)kvzap_kv_row_bytes(a.type, a.dk) &&
                   a.v_row == (int64_t)kvzap_kv_row_bytes(a.type, a.dv);
    const int64_t rows = p.rows;
    p.part_o           = (float *)workspace;
    p.part_ml          = p.part_o ? p.part_o + (size_t)plan.n_split * a.n_head_kv * rows * a.dv : nullptr;
    const dim3 grid((unsigned)((rows + plan.rows_per_cta - 1) / plan.rows_per_cta), (unsigned)a.n_head_kv,
                    (unsigned)plan.n_split);
    const bool q8 = a.type == KVZAP_KV_Q8_0;
    cudaError_t e;
    if (a.dk == 64) {
        e = q8 ? launch_attn_shape<64, true>(p, plan.rows_per_cta, grid, stream)
               : launch_attn_shape<64, false>(p, plan.rows_per_cta, grid, stream);
    } else {
        e = q8 ? launch_attn_shape<128, true>(p, plan.rows_per_cta, grid, stream)
               : launch_attn_shape<128, false>(p, plan.rows_per_cta, grid, stream);
    }
    if (e != cudaSuccess || plan.n_split == 1) return e;
    const size_t merge_smem = MERGE_THREADS * sizeof(float4) + (size_t)plan.n_split * sizeof(float);
    if (merge_smem > 48 * 1024) {
        e = cudaFuncSetAttribute(kvzap_attn_merge, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)merge_smem);
        if (e != cudaSuccess) return e;
    }
    return launch_pdl(kvzap_attn_merge, dim3((unsigned)rows, (unsigned)a.n_head_kv), dim3(MERGE_THREADS), merge_smem,
                      stream, p, (int)a.dv);
}

cudaError_t kvzap_append_cuda(const float * src, int64_t src_nb1, int64_t n_rows, int32_t d, const int64_t * slots,
                              void * pool, int64_t row_bytes, kvzap_kv_type type, cudaStream_t stream) {
    if (d % QK8 != 0) return cudaErrorInvalidValue;
    const int64_t warps = n_rows * (d / QK8);
    if (warps == 0) return cudaSuccess;
    const int threads = 256;
    kvzap_append_kernel<<<(unsigned)((warps * 32 + threads - 1) / threads), threads, 0, stream>>>(
        src, src_nb1, n_rows, d, slots, (char *)pool, row_bytes, type);
    return cudaGetLastError();
}

cudaError_t kvzap_moves_direct_cuda(void * k_pool, void * v_pool, int64_t k_row, int64_t v_row,
                                    const kvzap_row_move * moves_dev, int64_t n, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (k_row % 4 != 0 || v_row % 4 != 0) return cudaErrorInvalidValue;
    kvzap_moves_direct_kernel<<<(unsigned)n, 128, 0, stream>>>((char *)k_pool, (char *)v_pool, k_row, v_row, moves_dev);
    return cudaGetLastError();
}

cudaError_t kvzap_moves_cuda(void * k_pool, void * v_pool, int64_t k_row, int64_t v_row,
                             const kvzap_row_move * moves_dev, int64_t n, void * scratch, cudaStream_t stream) {
    if (n == 0) return cudaSuccess;
    if (k_row % 4 != 0 || v_row % 4 != 0) return cudaErrorInvalidValue;
    for (int phase = 0; phase < 2; phase++) {
        kvzap_moves_kernel<<<(unsigned)n, 128, 0, stream>>>((char *)k_pool, (char *)v_pool, k_row, v_row, moves_dev,
                                                            (char *)scratch, phase);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    return cudaSuccess;
}
