// The decode attention kernel of kvzap-attn.cu: one token, a GQA group of at most 8 query heads. Not a header of its
// own: kvzap-attn.cu includes it inside its anonymous namespace, after the helpers it shares with the general kernel
// (the chunk's start, the tile pipeline, the rescale, the warps' merge, a row's output, the MMA wrappers), so that
// the kernels share them in one translation unit.
#pragma once

// Decoding one token of a GQA group of at most 8 query heads, with the MMA's operands swapped: keys fill its 16 rows
// and the group's queries its 8 columns (S^T = K Q^T, then O^T += V^T P^T with P^T through shared memory). Against
// kvzap_attn_kernel's 16 query rows of which a group fills 4 or 8: half the MMAs and half the accumulators. Each of
// the 4 warps takes 16 keys of every 64-key tile, with its own softmax state; the warps merge at the end. Two kernels
// share the pieces below: kvzap_attn_decode_kernel loads each tile with the whole CTA (a barrier a tile),
// kvzap_attn_decode_warp_kernel lets each warp stream its own keys through stages of its own (no barrier in the loop).
// In the warp-wise kernel q8_0 K rows are read raw by int8 MMAs against int8 queries (scores_q8), and only V is
// dequantised; on an H100 at 128k keys that took q8_0 decoding from 146.6 to 106.8 us
// (cuda/results/h100-2026-12-07-attn.txt).

constexpr int DEC_NW = NTHREADS / 32; // warps
constexpr int DEC_R  = KT / DEC_NW;   // keys of a tile per warp: one MMA row block
constexpr int DEC_PS = 24;            // halves per row of a warp's P^T tile (16 keys + 8 of padding: 16-byte rows)
static_assert(DEC_R == 16, "a warp's keys are one MMA row block");

// One warp's softmax state over the keys it saw: this lane's two query columns (2 * (lane % 4) and the next), and
// its O^T blocks (dims 16 md + lane / 4 (+ 8), the same two queries).
template <int D>
struct decode_state {
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    float o[D / 16][4] = {};
};

// The group's queries as f16 rows into qs [8][ROW_H] (zero past the group), then as B fragments of Q^T, 16 dims a
// step. Ends with a barrier of the CTA.
template <int D>
__device__ __forceinline__ void decode_queries(const attn_params & p, int g, __half * qs, uint32_t (&qb)[D / 16][2]) {
    using L                   = attn_smem<D, false>;
    constexpr int MD          = D / 16;
    const kvzap_attn_args & a = p.a;
    const int lane            = threadIdx.x % 32;
    for (int i = threadIdx.x; i < 8 * D; i += NTHREADS) {
        const int r = i / D, d = i % D;
        const float x        = r < p.rows ? ((const float *)((const char *)a.q + (g * p.G + r) * a.q_nb1))[d] : 0.0f;
        qs[r * L::ROW_H + d] = __float2half_rn(x);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < MD; kk += 2) { // two k-steps a load: matrices (dims 0-7, 8-15) of steps kk and kk + 1
        const int mi = lane / 8;
        uint32_t r[4];
        ldmatrix_x4(r, qs + (lane % 8) * L::ROW_H + (kk + (mi >> 1)) * 16 + (mi & 1) * 8);
        qb[kk][0] = r[0];
        qb[kk][1] = r[1];
        if (kk + 1 < MD) {
            qb[kk + 1][0] = r[2];
            qb[kk + 1][1] = r[3];
        }
    }
}

// q8_0 keys are read as int8 by int8 MMAs (m16n8k32: one MMA a 32-value block, no dequantisation). The group's
// queries come as two int8 parts per value, one scale per row: q = qd (hi + lo / 254), hi = round(q / qd),
// lo = round((q / qd - hi) * 254), qd = max |q| / 127 over the row: within qd / 508 of q, finer than f16's rounding
// for every value above 1/32 of the row's largest. The MMA's rows (keys) are in the order scores_q8 reads them.
template <int D>
struct q8_queries {
    uint32_t hi[D / 32][2], lo[D / 32][2]; // B fragments: query lane / 4, bytes 4 (lane % 4) + (0, 16) of each block
    float sc[2];                           // qd * scale2 / 254 of this lane's query columns 2 (lane % 4) and the next
};

// The group's queries quantised as q8_queries describes, through qs (the f16 query rows' room: 2 x 8 x D int8 and
// 8 floats), rows past the group zero. Ends with a barrier of the CTA.
template <int D>
__device__ __forceinline__ void decode_queries_q8(const attn_params & p, int g, char * qs, float scale2,
                                                  q8_queries<D> & q) {
    constexpr int PER = D / 8; // threads a row, 8 values each
    static_assert(2 * 8 * D + 8 * 4 <= 8 * attn_smem<D, true>::ROW_H * 2, "the query rows' room");
    static_assert(8 * PER <= NTHREADS && 32 % PER == 0, "a row's threads in one warp");
    const kvzap_attn_args & a = p.a;
    int8_t *his = (int8_t *)qs, *los = his + 8 * D;
    float * qds = (float *)(los + 8 * D);
    const int t = threadIdx.x, r = t / PER, d0 = (t % PER) * 8;
    float x[8] = {};
    if (t < 8 * PER && r < p.rows) {
        const float * row = (const float *)((const char *)a.q + (g * p.G + r) * a.q_nb1) + d0;
#pragma unroll
        for (int i = 0; i < 8; i++) x[i] = row[i];
    }
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; i++) amax = fmaxf(amax, fabsf(x[i]));
#pragma unroll
    for (int o = 1; o < PER; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffff, amax, o));
    if (t < 8 * PER) {
        const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const float y       = x[i] * inv;
            const float h       = rintf(y);
            his[r * D + d0 + i] = (int8_t)h;
            los[r * D + d0 + i] = (int8_t)rintf((y - h) * 254.0f);
        }
        if (t % PER == 0) qds[r] = inv > 0.0f ? 1.0f / inv : 0.0f;
    }
    __syncthreads();
    const int lane = t % 32, n = lane / 4, c = lane % 4;
#pragma unroll
    for (int b = 0; b < D / 32; b++) {
        const int off = n * D + b * 32 + 4 * c;
        q.hi[b][0]    = *(const uint32_t *)(his + off);
        q.hi[b][1]    = *(const uint32_t *)(his + off + 16);
        q.lo[b][0]    = *(const uint32_t *)(los + off);
        q.lo[b][1]    = *(const uint32_t *)(los + off + 16);
    }
    q.sc[0] = qds[2 * c] * scale2 * (1.0f / 254.0f);
    q.sc[1] = qds[2 * c + 1] * scale2 * (1.0f / 254.0f);
}

// The word of shared memory at o, 2 more than a multiple of 4 (ALIGNED: a multiple of 4).
template <bool ALIGNED>
__device__ __forceinline__ uint32_t load4(const char * o) {
    if constexpr (ALIGNED) {
        return *(const uint32_t *)o;
    } else {
        return __funnelshift_r(*(const uint32_t *)(o - 2), *(const uint32_t *)(o + 2), 16);
    }
}

// S^T for one warp's 16 raw q8_0 K rows at raw (RAW_ROW bytes each, as the pool holds them), as scores_f16 gives it
// but with the MMA's rows lane / 4 and + 8 taken from keys 2 (lane / 4) and the next (decode_keys' KPERM): the lanes of
// one load then fall in 32 distinct banks (rows of 34 words). Per block two int8 MMAs (hi and lo), exact in int32,
// then scaled by the key's block scale and the query's qd.
template <int D>
__device__ __forceinline__ void scores_q8(const char * raw, const q8_queries<D> & q, float (&s)[4]) {
    using L        = attn_smem<D, true>;
    const int lane = threadIdx.x % 32, c = lane % 4;
    const char *r0 = raw + 2 * (lane / 4) * L::RAW_ROW, *r1 = r0 + L::RAW_ROW;
    float acc[4] = {};
#pragma unroll
    for (int b = 0; b < D / 32; b++) {
        const int off = b * Q8_BYTES + 2 + 4 * c; // 2 more than a multiple of 4 for even blocks, a multiple for odd
        uint32_t ka[4];
        if (b % 2 == 0) {
            ka[0] = load4<false>(r0 + off), ka[1] = load4<false>(r1 + off);
            ka[2] = load4<false>(r0 + off + 16), ka[3] = load4<false>(r1 + off + 16);
        } else {
            ka[0] = load4<true>(r0 + off), ka[1] = load4<true>(r1 + off);
            ka[2] = load4<true>(r0 + off + 16), ka[3] = load4<true>(r1 + off + 16);
        }
        int h[4] = {}, l[4] = {};
        mma_s8_16832(h, ka, q.hi[b][0], q.hi[b][1]);
        mma_s8_16832(l, ka, q.lo[b][0], q.lo[b][1]);
        const float d0 = __half2float(*(const __half *)(r0 + b * Q8_BYTES));
        const float d1 = __half2float(*(const __half *)(r1 + b * Q8_BYTES));
        acc[0] += (float)(h[0] * 254 + l[0]) * d0;
        acc[1] += (float)(h[1] * 254 + l[1]) * d0;
        acc[2] += (float)(h[2] * 254 + l[2]) * d1;
        acc[3] += (float)(h[3] * 254 + l[3]) * d1;
    }
    s[0] = acc[0] * q.sc[0];
    s[1] = acc[1] * q.sc[1];
    s[2] = acc[2] * q.sc[0];
    s[3] = acc[3] * q.sc[1];
}

// S^T (16 keys x 8 queries) = K Q^T for one warp's 16 f16 K rows at ks, times scale2 (the softmax scale in base 2):
// this lane's s[0..1] (key lane / 4, queries 2 (lane % 4) and the next) and s[2..3] (key + 8). The MMAs alternate
// between two accumulators, two dependent chains of D / 32 where one would be D / 16 long.
template <int D>
__device__ __forceinline__ void scores_f16(const __half * ks, const uint32_t (&qb)[D / 16][2], float scale2,
                                           float (&s)[4]) {
    using L          = attn_smem<D, false>;
    constexpr int MD = D / 16;
    const int lane   = threadIdx.x % 32;
    float t[2][4]    = {};
#pragma unroll
    for (int kk = 0; kk < MD; kk++) {
        const int mi = lane / 8;
        uint32_t ka[4];
        ldmatrix_x4(ka, ks + ((mi & 1) * 8 + lane % 8) * L::ROW_H + kk * 16 + (mi >> 1) * 8);
        mma_16816(t[kk & 1], ka, qb[kk][0], qb[kk][1]);
    }
#pragma unroll
    for (int i = 0; i < 4; i++) s[i] = (t[0][i] + t[1][i]) * scale2;
}

// One warp's 16 keys of a tile, their scores s (scores_f16, scores_q8: scaled, in base 2) in hand, and the V rows that
// v_rows() returns (16 f16 rows of ROW_H halves), the first of them list entry e_first; entries at or past e_end are
// masked where `edge` (the tile reaches the chunk's end). pw: the warp's P^T tile [8][DEC_PS]. KPERM: s[0..1] are
// the scores of key 2 (lane / 4) and s[2..3] of the next (scores_q8's order), not of keys lane / 4 and + 8.
template <int D, bool KPERM = false, typename VRows>
__device__ __forceinline__ void decode_keys(float (&s)[4], VRows v_rows, int e_first, int e_end, bool edge, __half * pw,
                                            decode_state<D> & st) {
    using L          = attn_smem<D, false>;
    constexpr int MD = D / 16;
    const int lane   = threadIdx.x % 32;
    const int k0 = KPERM ? 2 * (lane / 4) : lane / 4, k1 = KPERM ? k0 + 1 : k0 + 8; // the keys of s[0..1], s[2..3]
    if (edge) { // a select, not a product: the rows past the chunk may hold anything
        s[0] = e_first + k0 < e_end ? s[0] : -INFINITY;
        s[1] = e_first + k0 < e_end ? s[1] : -INFINITY;
        s[2] = e_first + k1 < e_end ? s[2] : -INFINITY;
        s[3] = e_first + k1 < e_end ? s[3] : -INFINITY;
    }
    // per query column: the maximum over the warp's 16 keys (lanes with the same lane % 4)
    float x0 = fmaxf(s[0], s[2]), x1 = fmaxf(s[1], s[3]);
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) {
        x0 = fmaxf(x0, __shfl_xor_sync(0xffffffff, x0, off));
        x1 = fmaxf(x1, __shfl_xor_sync(0xffffffff, x1, off));
    }
    const float n0 = fmaxf(st.m0, x0), n1 = fmaxf(st.m1, x1);
    const float b0 = n0 == -INFINITY ? 0.0f : n0, b1 = n1 == -INFINITY ? 0.0f : n1;
    const float c0 = exp2f(st.m0 - b0), c1 = exp2f(st.m1 - b1);
    st.m0    = n0;
    st.m1    = n1;
    s[0]     = exp2f(s[0] - b0);
    s[1]     = exp2f(s[1] - b1);
    s[2]     = exp2f(s[2] - b0);
    s[3]     = exp2f(s[3] - b1);
    float y0 = s[0] + s[2], y1 = s[1] + s[3];
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) {
        y0 += __shfl_xor_sync(0xffffffff, y0, off);
        y1 += __shfl_xor_sync(0xffffffff, y1, off);
    }
    st.l0 = st.l0 * c0 + y0;
    st.l1 = st.l1 * c1 + y1;
    rescale(st.o, c0, c1, c0, c1); // query columns q (elements 0, 2) and q + 1 (1, 3)
    // P^T as the B operand: stored [query][key] (this lane: keys k0 and k1, queries 2 (lane % 4) (+ 1))
    {
        const int q               = 2 * (lane % 4);
        pw[q * DEC_PS + k0]       = __float2half_rn(s[0]);
        pw[(q + 1) * DEC_PS + k0] = __float2half_rn(s[1]);
        pw[q * DEC_PS + k1]       = __float2half_rn(s[2]);
        pw[(q + 1) * DEC_PS + k1] = __float2half_rn(s[3]);
    }
    __syncwarp();
    uint32_t pb[4];
    ldmatrix_x4(pb, pw + (lane % 8) * DEC_PS + ((lane / 8) & 1) * 8); // (lanes 16-31 repeat 0-15: x2 in x4)
    const __half * vs = v_rows();
    // O^T (16 dims x 8 queries, per block) += V^T (16 dims x 16 keys) P^T
#pragma unroll
    for (int md = 0; md < MD; md++) {
        const int mi = lane / 8;
        uint32_t va[4];
        ldmatrix_x4_trans(va, vs + ((mi >> 1) * 8 + lane % 8) * L::ROW_H + md * 16 + (mi & 1) * 8);
        mma_16816(st.o[md], va, pb[0], pb[1]);
    }
    __syncwarp(); // pw is rewritten next tile
}

// The warps' states per query, merged through `scratch` (os [NW][8][D], ms and ls [NW][8]; the CTA's stages, free
// once every warp is past its loop: the caller's barrier), and the group's rows written out.
template <int D>
__device__ __forceinline__ void decode_finish(const attn_params & p, int g, int split, const decode_state<D> & st,
                                              char * scratch) {
    constexpr int MD = D / 16;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    float * os = (float *)scratch;
    float * ms = os + DEC_NW * 8 * D;
    float * ls = ms + DEC_NW * 8;
    {
        const int q = 2 * (lane % 4);
#pragma unroll
        for (int md = 0; md < MD; md++) {
            const int d                        = md * 16 + lane / 4;
            os[(warp * 8 + q) * D + d]         = st.o[md][0];
            os[(warp * 8 + q + 1) * D + d]     = st.o[md][1];
            os[(warp * 8 + q) * D + d + 8]     = st.o[md][2];
            os[(warp * 8 + q + 1) * D + d + 8] = st.o[md][3];
        }
        if (lane < 4) {
            ms[warp * 8 + q]     = st.m0;
            ms[warp * 8 + q + 1] = st.m1;
            ls[warp * 8 + q]     = st.l0;
            ls[warp * 8 + q + 1] = st.l1;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < p.rows * (D / 2); i += NTHREADS) {
        const int r = i / (D / 2), d = (i % (D / 2)) * 2;
        float m, l, v0, v1;
        merge_warp_states<DEC_NW, 8, D>(os, ms, ls, r, d, m, l, v0, v1);
        emit_row<D>(p, g, split, r, d, v0, v1, m, l);
    }
}

template <int D, bool Q8>
__global__ void __launch_bounds__(NTHREADS) kvzap_attn_decode_kernel(const attn_params p) {
#if KVZAP_TC
    using L           = attn_smem<D, Q8>;
    constexpr int NST = attn_stages(Q8, 1);
    static_assert(L::stage_bytes(NST) >= DEC_NW * 8 * (D + 2) * 4, "merge scratch");

    extern __shared__ __align__(16) char smem[];
    char * stages = smem;
    __half * qs   = (__half *)(smem + L::stage_bytes(NST)); // [8][ROW_H]
    __half * ps   = qs + 8 * L::ROW_H;                      // [NW][8][PS]

    const kvzap_attn_args & a = p.a;
    const int g = blockIdx.y, split = blockIdx.z, tid = threadIdx.x;
    const int warp = tid / 32;

    const int32_t * bt = a.block_table + (int64_t)g * a.bt_stride;
    const int e_begin  = split * p.chunk;
    int first_ids[NST];
    read_first_ids<NST>(p, bt, e_begin, first_ids);
    const int n_old = a.n_old[g];
    const int e_end = min(e_begin + p.chunk, n_old + 1); // one token sees every entry

    if (e_begin >= e_end) {
        empty_chunk(p, g, split, 0, p.rows, D);
        return;
    }

    __shared__ int slot_s[NST][KT];
    const int n_tiles = start_chunk<D, Q8, NST>(p, first_ids, e_begin, e_end, n_old, slot_s, stages);

    uint32_t qb[D / 16][2];
    decode_queries<D>(p, g, qs, qb);

    const float scale2 = a.scale * 1.4426950408889634f;
    decode_state<D> st;
    __half * pw  = ps + warp * 8 * DEC_PS;
    const int kb = warp * DEC_R; // this warp's keys within a tile

    for (int it = 0; it < n_tiles; it++) {
        const int e0        = e_begin + it * KT;
        const int cur       = it % NST;
        const int next_slot = advance_tiles<D, Q8, NST>(p, bt, slot_s, stages, it, n_tiles, e0, e_end);
        const __half * ks   = landed_tile<D, Q8, NST>(stages, cur, slot_s[cur]);
        const __half * vs   = ks + L::TILE_H + kb * L::ROW_H;
        float s[4];
        scores_f16<D>(ks + kb * L::ROW_H, qb, scale2, s);
        decode_keys<D>(
            s, [vs] { return vs; }, e0 + kb, e_end, e0 + KT > e_end, pw, st);
        if (tid < KT) slot_s[cur][tid] = next_slot;
        __syncthreads();
    }
    decode_finish<D>(p, g, split, st, stages);
#endif
}

// A warp's part of a stage (its 16 rows of K and V: f16 rows, or raw q8_0 rows), and what a warp's stages take.
// q8_0: three stages and one f16 part for its V rows (its K rows are read raw, by int8 MMAs), in the room that two
// stages and a dequantised K and V take: a warp has two tiles in flight instead of one, at the same occupancy.
template <int D, bool Q8>
struct decode_warp_smem {
    using L                       = attn_smem<D, Q8>;
    static constexpr int NST      = Q8 ? 3 : attn_stages(Q8, 1);
    static constexpr int STAGE    = Q8 ? 2 * DEC_R * L::RAW_ROW : 2 * DEC_R * L::ROW_H * 2;
    static constexpr int DEQ      = Q8 ? DEC_R * L::ROW_H * 2 : 0;
    static constexpr int PER_WARP = NST * STAGE + DEQ;
    static_assert(STAGE % 16 == 0 && PER_WARP % 16 == 0, "16-byte aligned stages");
    static_assert(DEC_NW * PER_WARP >= DEC_NW * 8 * (D + 2) * 4, "merge scratch");
};

// Decoding as kvzap_attn_decode_kernel, but each warp streams its own 16 keys of every tile through NST stages of its
// own (its loads, its block ids, q8_0 dequantisation of its rows), synchronising with __syncwarp only: no barrier of
// the CTA in the loop, so a warp waits on its own loads and not on the slowest warp's. The warps meet once, to merge.
template <int D, bool Q8>
__global__ void __launch_bounds__(NTHREADS) kvzap_attn_decode_warp_kernel(const attn_params p) {
#if KVZAP_TC
    using L           = attn_smem<D, Q8>;
    using W           = decode_warp_smem<D, Q8>;
    constexpr int NST = W::NST;

    extern __shared__ __align__(16) char smem[];
    __half * qs = (__half *)(smem + DEC_NW * W::PER_WARP); // [8][ROW_H]
    __half * ps = qs + 8 * L::ROW_H;                       // [NW][8][PS]
    __shared__ int slot_w[DEC_NW][NST][DEC_R];

    const kvzap_attn_args & a = p.a;
    const int g = blockIdx.y, split = blockIdx.z;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    char * wst   = smem + warp * W::PER_WARP;
    const int kb = warp * DEC_R; // this warp's keys within a tile

    // this lane's row: block ids of its first NST tiles, read alongside the head's length
    const int32_t * bt = a.block_table + (int64_t)g * a.bt_stride;
    const int e_begin  = split * p.chunk;
    int ids[NST];
    read_first_ids<NST, DEC_R>(p, bt, e_begin + kb, ids, lane);
    const int n_old = a.n_old[g];
    const int e_end = min(e_begin + p.chunk, n_old + 1); // one token sees every entry
    if (e_begin >= e_end) {
        empty_chunk(p, g, split, 0, p.rows, D);
        return;
    }
    const int n_tiles =
        start_chunk<D, Q8, NST, DEC_R, 32, W::STAGE>(p, ids, e_begin, e_end, n_old, slot_w[warp], wst, kb, lane);

    const float scale2 = a.scale * 1.4426950408889634f;
    // f16: the queries as f16 fragments; q8_0: as int8 (q8_queries; qb unused)
    uint32_t qb[Q8 ? 1 : D / 16][2];
    q8_queries<Q8 ? D : 32> qq;
    if constexpr (Q8) {
        decode_queries_q8<D>(p, g, (char *)qs, scale2, qq);
    } else {
        decode_queries<D>(p, g, qs, qb);
    }
    decode_state<D> st;
    __half * pw = ps + warp * 8 * DEC_PS;

    for (int it = 0; it < n_tiles; it++) {
        const int e0    = e_begin + it * KT;
        const int cur   = it % NST;
        const int ahead = it + NST - 1;
        if (ahead < n_tiles)
            load_rows<D, Q8, DEC_R, 32>(p, slot_w[warp][ahead % NST], wst + (ahead % NST) * W::STAGE, lane);
        cp_async_commit();
        const int next_slot = lane < DEC_R ? slot_of(p, bt, e0 + NST * KT + kb + lane, e_end) : -1;
        cp_async_wait<NST - 1>();
        __syncwarp();
        const bool edge = e0 + kb + DEC_R > e_end;
        float s[4];
        if constexpr (Q8) {
            // V's rows are dequantised into the warp's f16 part while K's scores come from the raw rows (decode_keys'
            // barrier after P^T's stores orders these stores too)
            const char * raw = wst + cur * W::STAGE;
            __half * deq     = (__half *)(wst + NST * W::STAGE);
            scores_q8<D>(raw, qq, s);
            dequant_rows<D, DEC_R, 32, 1>(raw, slot_w[warp][cur], deq, lane);
            decode_keys<D, true>(
                s, [deq] { return (const __half *)deq; }, e0 + kb, e_end, edge, pw, st);
        } else {
            if (edge && whole_block_rows(p, DEC_R)) {
                zero_rows_past<D, DEC_R>(slot_w[warp][cur], wst + cur * W::STAGE, lane);
                __syncwarp();
            }
            const __half * ks = (const __half *)(wst + cur * W::STAGE);
            const __half * vs = ks + DEC_R * L::ROW_H;
            scores_f16<D>(ks, qb, scale2, s);
            decode_keys<D>(
                s, [vs] { return vs; }, e0 + kb, e_end, edge, pw, st);
        }
        if (lane < DEC_R) slot_w[warp][cur][lane] = next_slot;
        __syncwarp();
    }
    __syncthreads(); // every warp is past its loop: the stages become the merge's scratch
    decode_finish<D>(p, g, split, st, smem);
#endif
}
