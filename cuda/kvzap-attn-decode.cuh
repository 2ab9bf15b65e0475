// The decode attention kernel of kvzap-attn.cu: one token, a GQA group of at most 8 query heads. Not a header of its
// own: kvzap-attn.cu includes it inside its anonymous namespace, after the helpers it shares with the general kernel
// (the chunk's start, the tile pipeline, the rescale, the warps' merge, a row's output, the MMA wrappers), so that
// the kernels share them in one translation unit.
#pragma once

// Decoding one token of a GQA group of at most 8 query heads, with the MMA's operands swapped: keys fill its 16 rows
// and the group's queries its 8 columns (S^T = K Q^T, then O^T += V^T P^T with P^T through shared memory). Against
// kvzap_attn_kernel's 16 query rows of which a group fills 4 or 8: half the MMAs and half the accumulators. Each of
// the 4 warps takes 16 keys of every 64-key tile, with its own softmax state; the warps merge at the end.
template <int D, bool Q8>
__global__ void __launch_bounds__(NTHREADS) kvzap_attn_decode_kernel(const attn_params p) {
#if KVZAP_TC
    using L           = attn_smem<D, Q8>;
    constexpr int NST = attn_stages(Q8, 1);
    constexpr int NW  = NTHREADS / 32;
    constexpr int NK  = KT / NW; // keys of a tile per warp: one MMA row block
    static_assert(NK == 16, "a warp's keys are one MMA row block");
    constexpr int MD = D / 16; // output row blocks (16 dims each)
    constexpr int PS = 24;     // halves per row of a warp's P^T tile (16 keys + 8 of padding: 16-byte aligned rows)
    static_assert(L::stage_bytes(NST) >= NW * 8 * (D + 2) * 4, "merge scratch");

    extern __shared__ __align__(16) char smem[];
    char * stages = smem;
    __half * qs   = (__half *)(smem + L::stage_bytes(NST)); // [8][ROW_H]
    __half * ps   = qs + 8 * L::ROW_H;                      // [NW][8][PS]

    const kvzap_attn_args & a = p.a;
    const int g = blockIdx.y, split = blockIdx.z, tid = threadIdx.x;
    const int warp = tid / 32, lane = tid % 32;

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

    // the group's queries as f16 rows (zero past the group), then as B fragments of Q^T, 16 dims a step
    for (int i = tid; i < 8 * D; i += NTHREADS) {
        const int r = i / D, d = i % D;
        const float x        = r < p.rows ? ((const float *)((const char *)a.q + (g * p.G + r) * a.q_nb1))[d] : 0.0f;
        qs[r * L::ROW_H + d] = __float2half_rn(x);
    }
    __syncthreads();
    uint32_t qb[MD][2];
#    pragma unroll
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

    const float scale2 = a.scale * 1.4426950408889634f;
    // this lane's two query columns (2 * (lane % 4) and the next) and keys lane / 4 and lane / 4 + 8 of its block
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    float o[MD][4]; // O^T blocks: dims 16 md + lane / 4 (+ 8), queries 2 (lane % 4) (+ 1)
#    pragma unroll
    for (int n = 0; n < MD; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    __half * pw  = ps + warp * 8 * PS;
    const int kb = warp * NK; // this warp's keys within a tile

    for (int it = 0; it < n_tiles; it++) {
        const int e0        = e_begin + it * KT;
        const int cur       = it % NST;
        const int next_slot = advance_tiles<D, Q8, NST>(p, bt, slot_s, stages, it, n_tiles, e0, e_end);
        const __half * ks   = landed_tile<D, Q8, NST>(stages, cur, slot_s[cur]);
        const __half * vs   = ks + L::TILE_H;

        // S^T (16 keys x 8 queries) = K Q^T
        float s[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
#    pragma unroll
        for (int kk = 0; kk < MD; kk++) {
            const int mi = lane / 8;
            uint32_t ka[4];
            ldmatrix_x4(ka, ks + (kb + (mi & 1) * 8 + lane % 8) * L::ROW_H + kk * 16 + (mi >> 1) * 8);
            mma_16816(s, ka, qb[kk][0], qb[kk][1]);
        }
        const int ka_ = e0 + kb + lane / 4; // the keys of s[0..1] and (+ 8) s[2..3]
        if (e0 + KT > e_end) {
            s[0] = ka_ < e_end ? s[0] * scale2 : -INFINITY;
            s[1] = ka_ < e_end ? s[1] * scale2 : -INFINITY;
            s[2] = ka_ + 8 < e_end ? s[2] * scale2 : -INFINITY;
            s[3] = ka_ + 8 < e_end ? s[3] * scale2 : -INFINITY;
        } else {
            s[0] *= scale2;
            s[1] *= scale2;
            s[2] *= scale2;
            s[3] *= scale2;
        }
        // per query column: the maximum over the warp's 16 keys (lanes with the same lane % 4)
        float x0 = fmaxf(s[0], s[2]), x1 = fmaxf(s[1], s[3]);
#    pragma unroll
        for (int off = 4; off < 32; off <<= 1) {
            x0 = fmaxf(x0, __shfl_xor_sync(0xffffffff, x0, off));
            x1 = fmaxf(x1, __shfl_xor_sync(0xffffffff, x1, off));
        }
        const float n0 = fmaxf(m0, x0), n1 = fmaxf(m1, x1);
        const float b0 = n0 == -INFINITY ? 0.0f : n0, b1 = n1 == -INFINITY ? 0.0f : n1;
        const float c0 = exp2f(m0 - b0), c1 = exp2f(m1 - b1);
        m0       = n0;
        m1       = n1;
        s[0]     = exp2f(s[0] - b0);
        s[1]     = exp2f(s[1] - b1);
        s[2]     = exp2f(s[2] - b0);
        s[3]     = exp2f(s[3] - b1);
        float y0 = s[0] + s[2], y1 = s[1] + s[3];
#    pragma unroll
        for (int off = 4; off < 32; off <<= 1) {
            y0 += __shfl_xor_sync(0xffffffff, y0, off);
            y1 += __shfl_xor_sync(0xffffffff, y1, off);
        }
        l0 = l0 * c0 + y0;
        l1 = l1 * c1 + y1;
        rescale(o, c0, c1, c0, c1); // query columns q (elements 0, 2) and q + 1 (1, 3)
        // P^T as the B operand: stored [query][key] (this lane: keys lane / 4 (+ 8), queries 2 (lane % 4) (+ 1))
        {
            const int q = 2 * (lane % 4), k = lane / 4;
            pw[q * PS + k]           = __float2half_rn(s[0]);
            pw[(q + 1) * PS + k]     = __float2half_rn(s[1]);
            pw[q * PS + k + 8]       = __float2half_rn(s[2]);
            pw[(q + 1) * PS + k + 8] = __float2half_rn(s[3]);
        }
        __syncwarp();
        uint32_t pb[4];
        ldmatrix_x4(pb, pw + (lane % 8) * PS + ((lane / 8) & 1) * 8); // (lanes 16-31 repeat 0-15: x2 in x4)
        // O^T (16 dims x 8 queries, per block) += V^T (16 dims x 16 keys) P^T
#    pragma unroll
        for (int md = 0; md < MD; md++) {
            const int mi = lane / 8;
            uint32_t va[4];
            ldmatrix_x4_trans(va, vs + (kb + (mi >> 1) * 8 + lane % 8) * L::ROW_H + md * 16 + (mi & 1) * 8);
            mma_16816(o[md], va, pb[0], pb[1]);
        }
        __syncwarp(); // pw is rewritten next tile
        if (tid < KT) slot_s[cur][tid] = next_slot;
        __syncthreads();
    }

    // the warps' states per query, merged through the stages' memory: os [NW][8][D], ms and ls [NW][8]
    float * os = (float *)stages;
    float * ms = os + NW * 8 * D;
    float * ls = ms + NW * 8;
    {
        const int q = 2 * (lane % 4);
#    pragma unroll
        for (int md = 0; md < MD; md++) {
            const int d                        = md * 16 + lane / 4;
            os[(warp * 8 + q) * D + d]         = o[md][0];
            os[(warp * 8 + q + 1) * D + d]     = o[md][1];
            os[(warp * 8 + q) * D + d + 8]     = o[md][2];
            os[(warp * 8 + q + 1) * D + d + 8] = o[md][3];
        }
        if (lane < 4) {
            ms[warp * 8 + q]     = m0;
            ms[warp * 8 + q + 1] = m1;
            ls[warp * 8 + q]     = l0;
            ls[warp * 8 + q + 1] = l1;
        }
    }
    __syncthreads();
    for (int i = tid; i < p.rows * (D / 2); i += NTHREADS) {
        const int r = i / (D / 2), d = (i % (D / 2)) * 2;
        float m, l, v0, v1;
        merge_warp_states<NW, 8, D>(os, ms, ls, r, d, m, l, v0, v1);
        emit_row<D>(p, g, split, r, d, v0, v1, m, l);
    }
#endif
}
