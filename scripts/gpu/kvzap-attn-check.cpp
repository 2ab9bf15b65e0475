// The CUDA kernels of GGML_OP_KVZAP_ATTN (cuda/kvzap-attn.cu) against a double-precision CPU twin of the op on random
// inputs, then timings of the decode kernel. Without llama.cpp:
//   nvcc -O3 -std=c++17 -arch=sm_90 -Icuda cuda/kvzap-attn.cu scripts/gpu/kvzap-attn-check.cpp \
//     scripts/gpu/stream-kernel.cu -o /tmp/kvzap-attn-check
//   /tmp/kvzap-attn-check            checks, then timings (16k, 64k, 128k keys; f16 and q8_0)
//   /tmp/kvzap-attn-check --small    checks only (for compute-sanitizer)
//   /tmp/kvzap-attn-check --time     one check, then the timings (tuning)
// The twin follows the op's definition (kvzap-attn-cpu.cpp's header): head g's list entry i lives in slot
// block_table[g][i / B] * B + i % B, token t sees the first n_old[g] + #{j : pos[j] <= pos[t]} entries. Pool slots
// that no visible entry uses hold NaN, and the output starts as NaN: a kernel that reads past a list or leaves a value
// unwritten fails. Prints one line per check and a table of timings; exit code 1 if a check fails (NaN never passes).
#include "kvzap-attn.cuh"

#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

// scripts/gpu/stream-kernel.cu
cudaError_t stream_read(const void * buf, size_t bytes, float * out, int carveout, int n_sm, cudaStream_t stream);

#define CK(x)                                                                                         \
    do {                                                                                              \
        cudaError_t e_ = (x);                                                                         \
        if (e_ != cudaSuccess) {                                                                      \
            std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            std::exit(2);                                                                             \
        }                                                                                             \
    } while (0)

static int failed = 0;

static void report(const std::string & name, double err, double tol) {
    const bool ok = err <= tol;  // NaN compares false
    failed += !ok;
    std::printf("%s %s: relative error %.2e (tolerance %.0e)\n", ok ? "PASS" : "FAIL", name.c_str(), err, tol);
}

// ||got - want|| / ||want|| over all values; NaN anywhere (an unwritten or poisoned value) is an infinite error
static double rel_l2(const std::vector<float> & got, const std::vector<double> & want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); i++) {
        if (!std::isfinite(got[i])) return INFINITY;
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
    }
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

template <typename T> struct dev {
    T * p = nullptr;
    size_t n = 0;
    explicit dev(size_t count) : n(count) { CK(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T))); }
    dev(const std::vector<T> & h) : dev(h.size()) { CK(cudaMemcpy(p, h.data(), n * sizeof(T), cudaMemcpyHostToDevice)); }
    ~dev() { cudaFree(p); }
    std::vector<T> get() const {
        std::vector<T> h(n);
        CK(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
        return h;
    }
};

// A pool row as the kernels store it, and its exact value as doubles.
static void encode_row(kvzap_kv_type type, const float * x, int d, uint8_t * row) {
    if (type == KVZAP_KV_F16) {
        for (int i = 0; i < d; i++) ((__half *) row)[i] = __float2half_rn(x[i]);
        return;
    }
    for (int b = 0; b < d / 32; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = std::max(amax, std::fabs(x[b * 32 + i]));
        const float dq = amax / 127.0f, id = dq != 0.0f ? 1.0f / dq : 0.0f;
        uint8_t * blk = row + b * 34;
        *(__half *) blk = __float2half_rn(dq);
        for (int i = 0; i < 32; i++) ((int8_t *) blk)[2 + i] = (int8_t) std::round(x[b * 32 + i] * id);
    }
}

static void decode_row(kvzap_kv_type type, const uint8_t * row, int d, double * out) {
    if (type == KVZAP_KV_F16) {
        for (int i = 0; i < d; i++) out[i] = __half2float(((const __half *) row)[i]);
        return;
    }
    for (int b = 0; b < d / 32; b++) {
        const uint8_t * blk = row + b * 34;
        const double dq = __half2float(*(const __half *) blk);
        for (int i = 0; i < 32; i++) out[b * 32 + i] = dq * ((const int8_t *) blk)[2 + i];
    }
}

static void nan_row(kvzap_kv_type type, int d, uint8_t * row) {
    const __half nan = __float2half_rn(NAN);
    if (type == KVZAP_KV_F16) {
        for (int i = 0; i < d; i++) ((__half *) row)[i] = nan;
    } else {
        for (int b = 0; b < d / 32; b++) {
            *(__half *) (row + b * 34) = nan;
            std::memset(row + b * 34 + 2, 0x7f, 32);
        }
    }
}

struct attn_case {
    int D, Hkv, G, T, B;
    kvzap_kv_type type;
    std::vector<int> n_old;  // per KV head: pairs held before the ubatch
    std::string name;
};

static const char * type_name(kvzap_kv_type t) { return t == KVZAP_KV_F16 ? "f16" : "q8_0"; }

// Builds a pool whose blocks are scattered at random, runs the kernel and the twin, reports the error.
static void attn_check(const attn_case & c, int n_sm, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> N(0.0f, 1.0f);
    const int D = c.D, H = c.Hkv, G = c.G, T = c.T, B = c.B, Hq = H * G;
    const size_t row = kvzap_kv_row_bytes(c.type, D);
    std::vector<int> len(H);
    int nb_max = 1;
    int n_blocks = 0;
    for (int g = 0; g < H; g++) {
        len[g] = c.n_old[g] + T;
        nb_max = std::max(nb_max, (len[g] + B - 1) / B);
        n_blocks += (len[g] + B - 1) / B;
    }
    n_blocks += 3;  // spare blocks nobody owns
    std::vector<int> perm(n_blocks);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<int32_t> bt((size_t) H * nb_max, 0);
    int next = 0;
    for (int g = 0; g < H; g++) {
        for (int b = 0; b < (len[g] + B - 1) / B; b++) bt[(size_t) g * nb_max + b] = perm[next++];
    }
    const size_t slots = (size_t) n_blocks * B;
    std::vector<uint8_t> kp(slots * row), vp(slots * row);
    for (size_t s = 0; s < slots; s++) {
        nan_row(c.type, D, kp.data() + s * row);
        nan_row(c.type, D, vp.data() + s * row);
    }
    std::vector<float> x(D);
    for (int g = 0; g < H; g++) {
        for (int i = 0; i < len[g]; i++) {
            const size_t slot = (size_t) bt[(size_t) g * nb_max + i / B] * B + i % B;
            for (float & v : x) v = N(rng);
            encode_row(c.type, x.data(), D, kp.data() + slot * row);
            for (float & v : x) v = N(rng);
            encode_row(c.type, x.data(), D, vp.data() + slot * row);
        }
    }
    std::vector<float> q((size_t) T * Hq * D);
    for (float & v : q) v = 1.5f * N(rng);
    std::vector<int32_t> pos(T);
    const int q0 = *std::max_element(c.n_old.begin(), c.n_old.end()) + 7;
    for (int t = 0; t < T; t++) pos[t] = q0 + t;
    std::vector<int32_t> n_old(c.n_old.begin(), c.n_old.end());
    const float scale = 1.0f / std::sqrt((float) D);

    // the twin
    std::vector<double> want((size_t) T * Hq * D, 0.0), kr(D), vr(D);
    for (int t = 0; t < T; t++) {
        for (int hq = 0; hq < Hq; hq++) {
            const int g = hq / G;
            int cnt = 0;
            for (int j = 0; j < T; j++) cnt += pos[j] <= pos[t];
            const int lim = n_old[g] + cnt;
            if (lim == 0) continue;
            std::vector<double> s(lim);
            double m = -INFINITY;
            for (int i = 0; i < lim; i++) {
                const size_t slot = (size_t) bt[(size_t) g * nb_max + i / B] * B + i % B;
                decode_row(c.type, kp.data() + slot * row, D, kr.data());
                double dot = 0;
                for (int d = 0; d < D; d++) dot += (double) q[((size_t) t * Hq + hq) * D + d] * kr[d];
                s[i] = dot * scale;
                m = std::max(m, s[i]);
            }
            double sum = 0;
            double * o = want.data() + ((size_t) t * Hq + hq) * D;
            for (int i = 0; i < lim; i++) {
                const double p = std::exp(s[i] - m);
                sum += p;
                const size_t slot = (size_t) bt[(size_t) g * nb_max + i / B] * B + i % B;
                decode_row(c.type, vp.data() + slot * row, D, vr.data());
                for (int d = 0; d < D; d++) o[d] += p * vr[d];
            }
            for (int d = 0; d < D; d++) o[d] /= sum;
        }
    }

    dev<float> dq(q), ddst((size_t) T * Hq * D);
    dev<uint8_t> dk(kp), dv(vp);
    dev<int32_t> dbt(bt), dno(n_old), dpos(pos);
    CK(cudaMemset(ddst.p, 0xff, ddst.n * sizeof(float)));  // NaN: every value must be written
    kvzap_attn_args a = {};
    a.q = dq.p;
    a.q_nb1 = (int64_t) D * 4;
    a.q_nb2 = (int64_t) Hq * D * 4;
    a.k = dk.p;
    a.v = dv.p;
    a.k_row = a.v_row = (int64_t) row;
    a.type = c.type;
    a.block_table = dbt.p;
    a.bt_stride = nb_max;
    a.n_old = dno.p;
    a.pos = dpos.p;
    a.dk = a.dv = D;
    a.n_head = Hq;
    a.n_head_kv = H;
    a.n_tokens = T;
    a.block_size = B;
    a.nb_max = nb_max;
    a.scale = scale;
    a.dst = ddst.p;
    a.dst_nb1 = (int64_t) D * 4;
    a.dst_nb2 = (int64_t) Hq * D * 4;
    const kvzap_attn_plan plan = kvzap_attn_make_plan(a, n_sm);
    dev<uint8_t> ws(plan.workspace_bytes);
    CK(kvzap_attn_cuda(a, plan, ws.p, 0));
    CK(cudaDeviceSynchronize());
    const double err = rel_l2(ddst.get(), want);
    char name[256];
    std::snprintf(name, sizeof name, "attn %s %s: D=%d G=%d T=%d B=%d n_old={%s} (rows/CTA %d, %d splits of %d)", c.name.c_str(), type_name(c.type),
                  D, G, T, B, [&] {
                      static std::string s;
                      s.clear();
                      for (size_t i = 0; i < c.n_old.size(); i++) s += (i ? "," : "") + std::to_string(c.n_old[i]);
                      return s.c_str();
                  }(),
                  plan.rows_per_cta, plan.n_split, plan.chunk);
    report(name, err, 3e-3);
}

static void append_check(kvzap_kv_type type, int D, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> N(0.0f, 2.0f);
    const int n = 300, slots = 1000;
    const size_t row = kvzap_kv_row_bytes(type, D);
    std::vector<float> src((size_t) n * (D + 4));  // rows D + 4 apart: a strided source
    for (float & v : src) v = N(rng);
    for (int r = 0; r < n; r += 17) std::fill_n(src.begin() + (size_t) r * (D + 4), D, 0.0f);  // all-zero rows: scale 0
    std::vector<int64_t> sl(slots);
    std::iota(sl.begin(), sl.end(), 0);
    std::shuffle(sl.begin(), sl.end(), rng);
    sl.resize(n);
    std::vector<uint8_t> pool(slots * row, 0xab), want = pool;
    for (int r = 0; r < n; r++) encode_row(type, src.data() + (size_t) r * (D + 4), D, want.data() + sl[r] * row);
    dev<float> ds(src);
    dev<int64_t> dsl(sl);
    dev<uint8_t> dp(pool);
    CK(kvzap_append_cuda(ds.p, (int64_t) (D + 4) * 4, n, D, dsl.p, dp.p, (int64_t) row, type, 0));
    CK(cudaDeviceSynchronize());
    const std::vector<uint8_t> got = dp.get();
    size_t diff = 0;
    for (size_t i = 0; i < got.size(); i++) diff += got[i] != want[i];
    char name[128];
    std::snprintf(name, sizeof name, "append %s D=%d: %d rows, bytes that differ from the CPU encoding: %zu", type_name(type), D, n, diff);
    report(name, (double) diff, 0);
}

// A removal sequence like the memory's (the last entry fills the hole, so later moves read slots earlier ones wrote),
// applied on the host in order and on the device resolved into independent moves.
static void moves_check(unsigned seed) {
    std::mt19937 rng(seed);
    const int64_t slots = 4096;
    const int64_t k_row = 256, v_row = 136;
    std::vector<uint8_t> k(slots * k_row), v(slots * v_row);
    for (auto & b : k) b = (uint8_t) rng();
    for (auto & b : v) b = (uint8_t) rng();
    std::vector<kvzap_row_move> seq;
    int64_t len = slots;
    for (int i = 0; i < 1500; i++) {
        const int64_t idx = std::uniform_int_distribution<int64_t>(0, len - 1)(rng);
        if (idx != len - 1) seq.push_back({len - 1, idx});
        len--;
    }
    for (int i = 0; i < 200; i++) {  // and arbitrary overlapping moves
        seq.push_back({std::uniform_int_distribution<int64_t>(0, 63)(rng), std::uniform_int_distribution<int64_t>(0, 63)(rng)});
    }
    std::vector<uint8_t> wk = k, wv = v;
    for (const auto & m : seq) {
        std::memmove(wk.data() + m.dst * k_row, wk.data() + m.src * k_row, k_row);
        std::memmove(wv.data() + m.dst * v_row, wv.data() + m.src * v_row, v_row);
    }
    kvzap_move_log log;
    for (const auto & m : seq) log.record(m.dst, m.src);
    bool overlap = false;
    const std::vector<kvzap_row_move> res = log.resolve(overlap);
    dev<uint8_t> dk(k), dv(v), scratch(res.size() * (k_row + v_row));
    dev<kvzap_row_move> dm(res);
    CK(kvzap_moves_cuda(dk.p, dv.p, k_row, v_row, dm.p, (int64_t) res.size(), scratch.p, 0));
    CK(cudaDeviceSynchronize());
    const auto gk = dk.get(), gv = dv.get();
    size_t diff = 0;
    for (size_t i = 0; i < gk.size(); i++) diff += gk[i] != wk[i];
    for (size_t i = 0; i < gv.size(); i++) diff += gv[i] != wv[i];
    char name[160];
    std::snprintf(name, sizeof name, "moves: %zu in sequence -> %zu independent (overlap %d), bytes that differ from in-order copies: %zu", seq.size(), res.size(), (int) overlap, diff);
    report(name, (double) diff, 0);
}

static double median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

// Device-to-device copy bandwidth (bytes read + written), the ceiling a read-mostly kernel is held to.
static double copy_gbs() {
    const size_t bytes = (size_t) 1 << 30;
    dev<uint8_t> a(bytes), b(bytes);
    CK(cudaMemset(a.p, 1, bytes));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> ms;
    for (int i = 0; i < 23; i++) {
        CK(cudaEventRecord(e0));
        CK(cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float t;
        CK(cudaEventElapsedTime(&t, e0, e1));
        if (i >= 3) ms.push_back(t);
    }
    return 2.0 * bytes / (median(ms) * 1e-3) / 1e9;
}

// Decoding one token: Llama-8B's attention shape (32 query heads, 8 KV heads, D 128), every head holding L keys in
// blocks scattered over the pool; several pools in turn when one would fit in L2.
// ms per call of `call` (20 calls captured in one CUDA graph, back to back: no host launch latency), the median of
// 5 replays after one
template <typename F> static double graph_ms(F && call) {
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    cudaGraph_t graph;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < 20; i++) call(st, i);
    CK(cudaStreamEndCapture(st, &graph));
    cudaGraphExec_t exec;
    CK(cudaGraphInstantiate(&exec, graph, 0));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> gms;
    for (int i = 0; i < 6; i++) {
        CK(cudaEventRecord(e0, st));
        CK(cudaGraphLaunch(exec, st));
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float tg;
        CK(cudaEventElapsedTime(&tg, e0, e1));
        if (i > 0) gms.push_back(tg / 20);
    }
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    CK(cudaStreamDestroy(st));
    return median(gms);
}

static void time_decode(kvzap_kv_type type, int L, int n_sm, double copy, FILE * json, int chunk_override = 0) {
    const int D = 128, H = 8, G = 4, B = 16, Hq = H * G;
    const size_t row = kvzap_kv_row_bytes(type, D);
    const int nb = (L + B - 1) / B;
    const size_t kv_bytes = (size_t) H * L * row * 2;
    const int sets = (int) std::max<size_t>(1, ((size_t) 512 << 20) / kv_bytes);
    std::mt19937 rng(7);
    std::vector<uint8_t> pool((size_t) H * nb * B * row);
    for (size_t i = 0; i < pool.size(); i++) pool[i] = (uint8_t) (rng() & 0x3f);  // finite f16 / small q8_0 values
    if (type == KVZAP_KV_Q8_0) {
        for (size_t s = 0; s < (size_t) H * nb * B; s++) {
            for (int b = 0; b < D / 32; b++) *(__half *) (pool.data() + s * row + b * 34) = __float2half_rn(0.01f);
        }
    }
    std::vector<int32_t> bt((size_t) H * nb);
    std::iota(bt.begin(), bt.end(), 0);
    std::shuffle(bt.begin(), bt.end(), rng);
    std::vector<int32_t> n_old(H, L - 1), pos(1, L - 1);
    std::vector<float> q((size_t) Hq * D);
    for (float & v : q) v = (float) (rng() % 1000) / 1000.0f - 0.5f;
    std::vector<dev<uint8_t> *> kp, vp;
    for (int s = 0; s < sets; s++) {
        kp.push_back(new dev<uint8_t>(pool));
        vp.push_back(new dev<uint8_t>(pool));
    }
    dev<float> dq(q), ddst((size_t) Hq * D);
    dev<int32_t> dbt(bt), dno(n_old), dpos(pos);
    kvzap_attn_args a = {};
    a.q = dq.p;
    a.q_nb1 = D * 4;
    a.q_nb2 = (int64_t) Hq * D * 4;
    a.k_row = a.v_row = (int64_t) row;
    a.type = type;
    a.block_table = dbt.p;
    a.bt_stride = nb;
    a.n_old = dno.p;
    a.pos = dpos.p;
    a.dk = a.dv = D;
    a.n_head = Hq;
    a.n_head_kv = H;
    a.n_tokens = 1;
    a.block_size = B;
    a.nb_max = nb;
    a.scale = 1.0f / std::sqrt((float) D);
    a.dst = ddst.p;
    a.dst_nb1 = D * 4;
    a.dst_nb2 = (int64_t) Hq * D * 4;
    kvzap_attn_plan plan = kvzap_attn_make_plan(a, n_sm);
    if (chunk_override > 0) {  // another cut, to compare
        plan.chunk = chunk_override;
        plan.n_split = (nb * B + chunk_override - 1) / chunk_override;
        plan.workspace_bytes = (size_t) plan.n_split * H * G * (D + 2) * sizeof(float);
    }
    dev<uint8_t> ws(plan.workspace_bytes);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> ms;
    for (int i = 0; i < 60; i++) {
        a.k = kp[i % sets]->p;
        a.v = vp[i % sets]->p;
        CK(cudaEventRecord(e0));
        CK(kvzap_attn_cuda(a, plan, ws.p, 0));
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        float t;
        CK(cudaEventElapsedTime(&t, e0, e1));
        if (i >= 10) ms.push_back(t);
    }
    const double t = median(ms);
    // as the decode graph launches it: 20 calls captured in one CUDA graph, back to back (no host launch latency in
    // the timing), the median of 5 replays over 20
    auto attn_call = [&](cudaStream_t st, int i) {
        a.k = kp[i % sets]->p;
        a.v = vp[i % sets]->p;
        CK(kvzap_attn_cuda(a, plan, ws.p, st));
    };
    const double tg = graph_ms(attn_call);
    if (getenv("KVZAP_INTERLEAVE")) {
        // each call after a pass over 16 MB by a kernel without shared memory (a weight matmul's stand-in), with the
        // driver's carveout choice and with the largest shared carveout: a cost of switching carveouts between the
        // kernels shows as the pair taking longer than its two parts
        dev<uint8_t> w((size_t) 16 << 20);
        dev<float> sums(64);
        CK(cudaMemset(w.p, 0, w.n));
        for (int carveout : {-1, 100}) {
            auto s_call = [&](cudaStream_t st, int) { CK(stream_read(w.p, w.n, sums.p, carveout, n_sm, st)); };
            const double ts = graph_ms(s_call);
            const double tp = graph_ms([&](cudaStream_t st, int i) { s_call(st, i); attn_call(st, i); });
            std::printf("interleave %-4s L=%6d carveout %4d: stream %7.2f us, attention %7.2f us, both %7.2f us, excess %6.2f us\n",
                        type_name(type), L, carveout, ts * 1e3, tg * 1e3, tp * 1e3, (tp - ts - tg) * 1e3);
        }
    }
    const std::vector<float> out = ddst.get();
    bool finite = true;
    for (float v : out) finite = finite && std::isfinite(v);
    const double gbs = kv_bytes / (t * 1e-3) / 1e9;
    std::printf("decode %-4s L=%6d  KV %7.1f MB  %8.1f us  %7.1f GB/s  %5.1f%% of copy  in a graph %8.1f us  %7.1f GB/s  (floor %.1f us, %d splits of %d)%s\n",
                type_name(type), L, kv_bytes / 1e6, t * 1e3, gbs, 100.0 * gbs / copy, tg * 1e3, kv_bytes / (tg * 1e-3) / 1e9,
                kv_bytes / (copy * 1e9) * 1e6, plan.n_split, plan.chunk, finite ? "" : "  NON-FINITE OUTPUT");
    std::fprintf(json, "{\"kernel\":\"kvzap\",\"type\":\"%s\",\"keys\":%d,\"kv_bytes\":%zu,\"us\":%.2f,\"graph_us\":%.2f,\"gbs\":%.1f,\"copy_gbs\":%.1f,\"chunk\":%d}\n",
                 type_name(type), L, kv_bytes, t * 1e3, tg * 1e3, gbs, copy, plan.chunk);
    if (!finite) failed++;
    for (int s = 0; s < sets; s++) {
        delete kp[s];
        delete vp[s];
    }
}

// "1,2,3" -> {1, 2, 3}; the default where unset
static std::vector<int> int_list(const char * c, std::vector<int> def) {
    if (!c || !*c) return def;
    std::vector<int> out;
    while (c && *c) {
        if (std::atoi(c) > 0) out.push_back(std::atoi(c));
        c = std::strchr(c, ',');
        if (c) c++;
    }
    return out;
}

int main(int argc, char ** argv) {
    const bool small = argc > 1 && std::strcmp(argv[1], "--small") == 0;
    const bool time_only = argc > 1 && std::strcmp(argv[1], "--time") == 0;
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    const int cc = prop.major * 10 + prop.minor;
    std::printf("device: %s, cc %d, %d SMs\n", prop.name, cc, prop.multiProcessorCount);
    if (!kvzap_attn_supported(cc, KVZAP_KV_F16, 128, 128)) {
        std::printf("FAIL this device is not served by the kernels\n");
        return 1;
    }
    const int n_sm = prop.multiProcessorCount;
    unsigned seed = 1;
    for (kvzap_kv_type type : {KVZAP_KV_F16, KVZAP_KV_Q8_0}) {  // a quick sanity check before timings
        if (!time_only) break;
        attn_check({128, 8, 4, 1, 16, type, {30000, 0, 17, 4095, 5, 9000, 64, 1}, "decode long"}, n_sm, seed++);
    }
    for (kvzap_kv_type type : {KVZAP_KV_F16, KVZAP_KV_Q8_0}) {
        if (time_only) break;
        for (int D : {64, 128}) {
            for (int G : {1, 4, 8}) {
                const int H = G == 8 ? 2 : 4;
                std::vector<int> ragged = {0, 5, 1000, 333};  // an empty head, a short one, lengths off the block
                std::vector<int> first(H, 0);                 // the first ubatch of a sequence
                std::vector<int> lng = {small ? 3000 : 20000, 17, 0, 4095};  // one long head: split-K
                ragged.resize(H);
                lng.resize(H);
                attn_check({D, H, G, 1, 16, type, ragged, "decode ragged"}, n_sm, seed++);
                attn_check({D, H, G, 1, 16, type, lng, "decode long"}, n_sm, seed++);
                attn_check({D, H, G, 3, 16, type, ragged, "decode 3 tokens"}, n_sm, seed++);
                attn_check({D, H, G, 77, 16, type, ragged, "prefill"}, n_sm, seed++);
                attn_check({D, H, G, 200, 16, type, first, "prefill first"}, n_sm, seed++);
                attn_check({D, H, G, 1, 32, type, ragged, "decode B=32"}, n_sm, seed++);
                attn_check({D, H, G, 9, 24, type, lng, "decode B=24"}, n_sm, seed++);  // rows copied one by one
            }
        }
        for (int D : {64, 128}) append_check(type, D, seed++);
    }
    if (!time_only) moves_check(seed++);
    std::printf("%s: %d failed\n", failed ? "FAIL" : "PASS", failed);
    if (small) return failed ? 1 : 0;

    const double copy = copy_gbs();
    std::printf("device-to-device copy: %.1f GB/s (read + written)\n", copy);
    FILE * json = std::fopen(getenv("KVZAP_TIMINGS") ? getenv("KVZAP_TIMINGS") : "/dev/null", "w");
    // KVZAP_TIME_L=4096,16384 and KVZAP_TIME_TYPES=f16 narrow the timings (a profiler run); KVZAP_CHUNKS=512,1024
    // times other cuts of every f16 length too
    const std::vector<int> lens = int_list(getenv("KVZAP_TIME_L"), {4096, 16384, 65536, 131072});
    const char * types = getenv("KVZAP_TIME_TYPES");
    for (kvzap_kv_type type : {KVZAP_KV_F16, KVZAP_KV_Q8_0}) {
        if (types && !std::strstr(types, type_name(type))) continue;
        for (int L : lens) time_decode(type, L, n_sm, copy, json);
    }
    for (int chunk : int_list(getenv("KVZAP_CHUNKS"), {})) {
        for (int L : lens) time_decode(KVZAP_KV_F16, L, n_sm, copy, json, chunk);
    }
    std::fclose(json);
    return failed ? 1 : 0;
}
