// CUDA kernels of calibration: the KVzip+ oracle of a layer (two passes over key tiles: the log-sum-exp of every
// query's softmax, then each context key's best normalised attention) and AdamW training of the MLP surrogate.
// Both follow their CPU twins (kvzap-oracle-cpu.cpp, kvzap-mlp-cpu.cpp) step for step; sums may run in another order.
#include "kvzap-compute.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace {

struct cuda_failure {
    std::string what;
};

#define KVZAP_CK(x)                                                                                   \
    do {                                                                                              \
        cudaError_t e_ = (x);                                                                         \
        if (e_ != cudaSuccess) throw cuda_failure{ std::string(#x) + ": " + cudaGetErrorString(e_) }; \
    } while (0)

// A device buffer freed on scope exit, so that a failure midway leaks nothing.
template <typename T>
struct dev_buf {
    T * p    = nullptr;
    size_t n = 0;
    explicit dev_buf(size_t count) : n(count) {
        if (n) KVZAP_CK(cudaMalloc(&p, n * sizeof(T)));
    }
    dev_buf(const T * host, size_t count) : dev_buf(count) { upload(host); }
    ~dev_buf() {
        if (p) cudaFree(p);
    }
    dev_buf(const dev_buf &)             = delete;
    dev_buf & operator=(const dev_buf &) = delete;
    void upload(const T * host) {
        if (n) KVZAP_CK(cudaMemcpy(p, host, n * sizeof(T), cudaMemcpyHostToDevice));
    }
    void download(T * host) const {
        if (n) KVZAP_CK(cudaMemcpy(host, p, n * sizeof(T), cudaMemcpyDeviceToHost));
    }
    void zero() {
        if (n) KVZAP_CK(cudaMemset(p, 0, n * sizeof(T)));
    }
};

void check_launch() {
    KVZAP_CK(cudaGetLastError());
}

// ---- oracle ----

// Both passes tile (queries x keys) in blocks of 64 x 64 held in shared memory as [dk][64 + 1] (no bank conflicts),
// with 16 x 16 threads that each compute a 4 x 4 patch of dot products: 8 shared loads feed 16 multiply-adds.
constexpr int TILE    = 64;
constexpr int SIDE    = 16;          // threads per side of the block
constexpr int PATCH   = TILE / SIDE; // 4
constexpr int THREADS = SIDE * SIDE; // 256
constexpr int PAD     = TILE + 1;

// vnorm[g][i] = sqrt(v_i^T M_g v_i) for the context values of g's KV head; one block per (i, g), one thread per a.
__global__ void vnorm_kernel(const float * __restrict__ V, const double * __restrict__ M, int nc, int dv, int G,
                             float * __restrict__ vnorm) {
    extern __shared__ double sh[];
    double * v    = sh;      // [dv]
    double * part = sh + dv; // [blockDim]
    const int i = blockIdx.x, g = blockIdx.y, h = g / G;
    const float * vi = V + ((int64_t)h * nc + i) * dv;
    for (int a = threadIdx.x; a < dv; a += blockDim.x) v[a] = vi[a];
    __syncthreads();
    double acc        = 0;
    const double * Mg = M + (int64_t)g * dv * dv;
    for (int a = threadIdx.x; a < dv; a += blockDim.x) {
        double t = 0;
        for (int b = 0; b < dv; b++) t += Mg[a * dv + b] * v[b];
        acc += v[a] * t;
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) vnorm[(int64_t)g * nc + i] = (float)sqrt(fmax(0.0, part[0]));
}

// Loads rows [r0, r0 + TILE) of a [rows][dk] matrix (row stride `stride` floats) transposed into tile[e][r] (row length
// PAD), zeros past `rows`.
__device__ void load_tile(float * tile, const float * src, int64_t stride, int r0, int rows, int dk) {
    for (int idx = threadIdx.x; idx < TILE * dk; idx += blockDim.x) {
        const int r = idx / dk, e = idx % dk;
        tile[e * PAD + r] = r0 + r < rows ? src[(int64_t)(r0 + r) * stride + e] : 0.0f;
    }
}

// acc[a][c] = a-tile row (ra + a) . b-tile row (rb + SIDE c), over dk
__device__ __forceinline__ void patch_dots(const float * at, int ra, const float * bt, int rb, int dk,
                                           float acc[PATCH][PATCH]) {
#pragma unroll
    for (int a = 0; a < PATCH; a++) {
#pragma unroll
        for (int c = 0; c < PATCH; c++) acc[a][c] = 0.0f;
    }
    for (int e = 0; e < dk; e++) {
        float av[PATCH], bv[PATCH];
#pragma unroll
        for (int a = 0; a < PATCH; a++) av[a] = at[e * PAD + ra + a];
#pragma unroll
        for (int c = 0; c < PATCH; c++) bv[c] = bt[e * PAD + rb + SIDE * c];
#pragma unroll
        for (int a = 0; a < PATCH; a++) {
#pragma unroll
            for (int c = 0; c < PATCH; c++) acc[a][c] += av[a] * bv[c];
        }
    }
}

// Pass 1: lse[g][jj] = log sum over keys p <= j of exp(scale q_j . k_p). One block per (64 queries, head g); thread
// (ty, tx) takes queries 4 ty .. 4 ty + 3 and keys tx + 16 c of each key tile, with an online max and sum per query.
__global__ void lse_kernel(const float * __restrict__ Q, const float * __restrict__ K, int nq, int q0, int q1, int Hq,
                           int G, int dk, float scale, float * __restrict__ lse) {
    extern __shared__ float shf[];
    float * qt   = shf;              // [dk][PAD]
    float * kt   = qt + dk * PAD;    // [dk][PAD]
    float * rm   = kt + dk * PAD;    // [TILE][SIDE]
    float * rs   = rm + TILE * SIDE; // [TILE][SIDE]
    const int jt = blockIdx.x * TILE, g = blockIdx.y, h = g / G;
    const int ty = threadIdx.x / SIDE, tx = threadIdx.x % SIDE;
    load_tile(qt, Q + (int64_t)g * dk, (int64_t)Hq * dk, jt, nq, dk);
    float m[PATCH], s[PATCH];
#pragma unroll
    for (int a = 0; a < PATCH; a++) {
        m[a] = -INFINITY;
        s[a] = 0.0f;
    }
    const int last   = min(q1, q0 + jt + TILE) - 1; // the last key any query of the tile sees
    const float * Kh = K + (int64_t)h * q1 * dk;
    for (int p0 = 0; p0 <= last; p0 += TILE) {
        __syncthreads();
        load_tile(kt, Kh, dk, p0, q1, dk);
        __syncthreads();
        float acc[PATCH][PATCH];
        patch_dots(qt, ty * PATCH, kt, tx, dk, acc);
#pragma unroll
        for (int a = 0; a < PATCH; a++) {
            const int j = q0 + jt + ty * PATCH + a;
#pragma unroll
            for (int c = 0; c < PATCH; c++) {
                const int p = p0 + tx + SIDE * c;
                if (p > j || p >= q1) continue;
                const float l = acc[a][c] * scale;
                if (l > m[a]) {
                    s[a] = s[a] * expf(m[a] - l) + 1.0f;
                    m[a] = l;
                } else {
                    s[a] += expf(l - m[a]);
                }
            }
        }
    }
#pragma unroll
    for (int a = 0; a < PATCH; a++) {
        rm[(ty * PATCH + a) * SIDE + tx] = m[a];
        rs[(ty * PATCH + a) * SIDE + tx] = s[a];
    }
    __syncthreads();
    const int r = threadIdx.x;
    if (r < TILE && jt + r < nq) {
        float M = -INFINITY;
        for (int u = 0; u < SIDE; u++) M = fmaxf(M, rm[r * SIDE + u]);
        double S = 0;
        for (int u = 0; u < SIDE; u++) {
            const float mu = rm[r * SIDE + u];
            if (mu > -INFINITY) S += (double)rs[r * SIDE + u] * exp((double)mu - M);
        }
        lse[(int64_t)g * nq + jt + r] = M + (float)log(S);
    }
}

// Pass 2: out[i][h] = max over query heads g of h and queries j >= i of exp(scale q_j . k_i - lse) vnorm[g][i] /
// xnorm[j]. One block per (64 context keys, KV head h); thread (ty, tx) takes keys 4 ty .. 4 ty + 3 and queries tx + 16
// c.
__global__ void score_kernel(const float * __restrict__ Q, const float * __restrict__ K, const float * __restrict__ lse,
                             const float * __restrict__ vnorm, const float * __restrict__ xnorm, int nq, int q0, int q1,
                             int c0, int nc, int Hq, int Hkv, int G, int dk, float scale, float * __restrict__ out) {
    extern __shared__ float shf[];
    float * kt   = shf;           // [dk][PAD]
    float * qt   = kt + dk * PAD; // [dk][PAD]
    float * red  = qt + dk * PAD; // [TILE][SIDE]
    const int it = blockIdx.x * TILE, h = blockIdx.y;
    const int ty = threadIdx.x / SIDE, tx = threadIdx.x % SIDE;
    load_tile(kt, K + ((int64_t)h * q1 + c0) * dk, dk, it, nc, dk);
    float best[PATCH];
#pragma unroll
    for (int a = 0; a < PATCH; a++) best[a] = 0.0f;
    for (int g = h * G; g < (h + 1) * G; g++) {
        float vn[PATCH];
#pragma unroll
        for (int a = 0; a < PATCH; a++) {
            const int ii = it + ty * PATCH + a;
            vn[a]        = ii < nc ? vnorm[(int64_t)g * nc + ii] : 0.0f;
        }
        for (int j0 = 0; j0 < nq; j0 += TILE) {
            if (q0 + j0 + TILE - 1 < c0 + it) continue; // every query of this tile precedes every key of the block
            __syncthreads();
            load_tile(qt, Q + (int64_t)g * dk, (int64_t)Hq * dk, j0, nq, dk);
            __syncthreads();
            float acc[PATCH][PATCH];
            patch_dots(kt, ty * PATCH, qt, tx, dk, acc);
#pragma unroll
            for (int c = 0; c < PATCH; c++) {
                const int jj = j0 + tx + SIDE * c;
                if (jj >= nq) continue;
                const float l   = lse[(int64_t)g * nq + jj];
                const float inv = 1.0f / fmaxf(1e-30f, xnorm[jj]);
#pragma unroll
                for (int a = 0; a < PATCH; a++) {
                    const int ii = it + ty * PATCH + a;
                    if (ii >= nc || q0 + jj < c0 + ii) continue;
                    best[a] = fmaxf(best[a], expf(acc[a][c] * scale - l) * vn[a] * inv);
                }
            }
        }
    }
#pragma unroll
    for (int a = 0; a < PATCH; a++) red[(ty * PATCH + a) * SIDE + tx] = best[a];
    __syncthreads();
    const int r = threadIdx.x;
    if (r < TILE && it + r < nc) {
        float b = 0.0f;
        for (int u = 0; u < SIDE; u++) b = fmaxf(b, red[r * SIDE + u]);
        out[(int64_t)(it + r) * Hkv + h] = b;
    }
}

size_t tile_smem(int dk) {
    return ((size_t)2 * dk * PAD + (size_t)2 * TILE * SIDE) * sizeof(float);
}

void oracle_layer(const kvzap_oracle_layer & L, float * out) {
    const int Hq = L.n_head, Hkv = L.n_head_kv, G = Hq / Hkv, dk = L.dk, dv = L.dv;
    const int nc = L.c1 - L.c0, nq = L.q1 - L.q0;
    if (nc == 0 || nq == 0) {
        std::fill(out, out + (size_t)nc * Hkv, 0.0f);
        return;
    }
    KVZAP_CK(cudaSetDevice(0));
    dev_buf<float> K(L.K, (size_t)Hkv * L.q1 * dk), V(L.V, (size_t)Hkv * nc * dv), Q(L.Q, (size_t)nq * Hq * dk);
    dev_buf<float> xn(L.xnorm, (size_t)nq);
    dev_buf<double> M(L.M, (size_t)Hq * dv * dv);
    dev_buf<float> vn((size_t)Hq * nc), lse((size_t)Hq * nq), o((size_t)nc * Hkv);

    const int vt = dv >= 128 ? 128 : (dv >= 64 ? 64 : 32);
    vnorm_kernel<<<dim3(nc, Hq), vt, (size_t)(dv + vt) * sizeof(double)>>>(V.p, M.p, nc, dv, G, vn.p);
    check_launch();
    const size_t smem = tile_smem(dk);
    int smem_max      = 0;
    KVZAP_CK(cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
    if (smem > (size_t)smem_max) {
        throw cuda_failure{ "head dim " + std::to_string(dk) + " needs " + std::to_string(smem) +
                            " bytes of shared memory per block, this GPU has " + std::to_string(smem_max) };
    }
    KVZAP_CK(cudaFuncSetAttribute(lse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    KVZAP_CK(cudaFuncSetAttribute(score_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    lse_kernel<<<dim3((nq + TILE - 1) / TILE, Hq), THREADS, smem>>>(Q.p, K.p, nq, L.q0, L.q1, Hq, G, dk, L.kq_scale,
                                                                    lse.p);
    check_launch();
    score_kernel<<<dim3((nc + TILE - 1) / TILE, Hkv), THREADS, smem>>>(Q.p, K.p, lse.p, vn.p, xn.p, nq, L.q0, L.q1,
                                                                       L.c0, nc, Hq, Hkv, G, dk, L.kq_scale, o.p);
    check_launch();
    KVZAP_CK(cudaDeviceSynchronize());
    o.download(out);
}

// ---- MLP training ----

__device__ double gelu_erf(double z) {
    return 0.5 * z * erfc(-z * 0.70710678118654752440);
}

__device__ double gelu_erf_grad(double z) {
    return 0.5 * erfc(-z * 0.70710678118654752440) + z * 0.39894228040143267794 * exp(-0.5 * z * z);
}

struct mlp_dims {
    int d, m, h;
    int64_t oB1, oW2, oB2, size;
};

// One block per batch row: forward, error, and the backward pass down to dL/dz1, all of it for that row.
__global__ void mlp_rows_kernel(mlp_dims D, const float * __restrict__ X, const float * __restrict__ Y,
                                const uint32_t * __restrict__ rows_idx, int rows, const float * __restrict__ theta,
                                double * __restrict__ A1, double * __restrict__ DZ, double * __restrict__ DOUT,
                                double * __restrict__ rowloss) {
    extern __shared__ double shd[];
    double * z      = shd;        // [m]
    double * a      = z + D.m;    // [m]
    double * dout   = a + D.m;    // [h]
    double * err2   = dout + D.h; // [h]
    const int r     = blockIdx.x;
    const int64_t s = rows_idx[r];
    const float * x = X + s * D.d;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    for (int j = warp; j < D.m; j += warps) {
        const float * w = theta + (int64_t)j * D.d;
        double acc      = 0;
        for (int i = lane; i < D.d; i += 32) acc += (double)w[i] * (double)x[i];
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
        if (lane == 0) {
            z[j] = acc + (double)theta[D.oB1 + j];
            a[j] = gelu_erf(z[j]);
        }
    }
    __syncthreads();
    for (int k = threadIdx.x; k < D.h; k += blockDim.x) {
        double acc = theta[D.oB2 + k];
        for (int j = 0; j < D.m; j++) acc += (double)theta[D.oW2 + (int64_t)k * D.m + j] * a[j];
        const double e             = acc - (double)Y[s * D.h + k];
        err2[k]                    = e * e;
        dout[k]                    = 2.0 * e / ((double)rows * D.h);
        DOUT[(int64_t)r * D.h + k] = dout[k];
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double l = 0;
        for (int k = 0; k < D.h; k++) l += err2[k];
        rowloss[r] = l;
    }
    for (int j = threadIdx.x; j < D.m; j += blockDim.x) {
        double da = 0;
        for (int k = 0; k < D.h; k++) da += (double)theta[D.oW2 + (int64_t)k * D.m + j] * dout[k];
        DZ[(int64_t)r * D.m + j] = da * gelu_erf_grad(z[j]);
        A1[(int64_t)r * D.m + j] = a[j];
    }
}

// dL/dW1[j][i] = sum over the batch rows of DZ[r][j] x_r[i]; rows in order, as on the CPU.
__global__ void mlp_grad_w1_kernel(mlp_dims D, const float * __restrict__ X, const uint32_t * __restrict__ rows_idx,
                                   int rows, const double * __restrict__ DZ, double * __restrict__ grad) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x, j = blockIdx.y;
    if (i >= D.d) return;
    double acc = 0;
    for (int r = 0; r < rows; r++) acc += DZ[(int64_t)r * D.m + j] * (double)X[(int64_t)rows_idx[r] * D.d + i];
    grad[(int64_t)j * D.d + i] = acc;
}

// dL/db1, dL/dW2, dL/db2; thread 0 also adds the batch's squared errors to the epoch's sum.
__global__ void mlp_grad_small_kernel(mlp_dims D, int rows, const double * __restrict__ A1,
                                      const double * __restrict__ DZ, const double * __restrict__ DOUT,
                                      const double * __restrict__ rowloss, double * __restrict__ grad,
                                      double * __restrict__ epoch_loss) {
    const int64_t count = D.m + (int64_t)D.h * D.m + D.h;
    for (int64_t idx = threadIdx.x; idx < count; idx += blockDim.x) {
        double acc = 0;
        if (idx < D.m) {
            for (int r = 0; r < rows; r++) acc += DZ[(int64_t)r * D.m + idx];
        } else if (idx < D.m + (int64_t)D.h * D.m) {
            const int64_t q = idx - D.m;
            const int k = (int)(q / D.m), j = (int)(q % D.m);
            for (int r = 0; r < rows; r++) acc += DOUT[(int64_t)r * D.h + k] * A1[(int64_t)r * D.m + j];
        } else {
            const int k = (int)(idx - D.m - (int64_t)D.h * D.m);
            for (int r = 0; r < rows; r++) acc += DOUT[(int64_t)r * D.h + k];
        }
        grad[D.oB1 + idx] = acc;
    }
    if (threadIdx.x == 0) {
        double l = 0;
        for (int r = 0; r < rows; r++) l += rowloss[r];
        *epoch_loss += l;
    }
}

__global__ void mlp_norm_kernel(const double * __restrict__ grad, int64_t size, double * __restrict__ norm2) {
    __shared__ double part[1024];
    double acc = 0;
    for (int64_t k = threadIdx.x; k < size; k += blockDim.x) acc += grad[k] * grad[k];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) *norm2 = part[0];
}

__global__ void mlp_adamw_kernel(int64_t size, const double * __restrict__ grad, const double * __restrict__ norm2,
                                 double clip, double lr, double beta1, double beta2, double c1, double c2, double eps,
                                 double wd, float * __restrict__ theta, double * __restrict__ m1,
                                 double * __restrict__ m2) {
    const int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= size) return;
    const double norm  = sqrt(*norm2);
    const double scale = norm > clip ? clip / (norm + 1e-6) : 1.0;
    const double g     = grad[k] * scale;
    m1[k]              = beta1 * m1[k] + (1 - beta1) * g;
    m2[k]              = beta2 * m2[k] + (1 - beta2) * g * g;
    const double t     = (double)theta[k] * (1 - lr * wd);
    theta[k]           = (float)(t - (lr * (m1[k] / c1)) / (sqrt(m2[k] / c2) + eps));
}

void train_mlp(const kvzap_mlp_train & t) {
    KVZAP_CK(cudaSetDevice(0));
    mlp_dims D;
    D.d         = t.d;
    D.m         = t.m;
    D.h         = t.h;
    D.oB1       = (int64_t)t.m * t.d;
    D.oW2       = D.oB1 + t.m;
    D.oB2       = D.oW2 + (int64_t)t.h * t.m;
    D.size      = D.oB2 + t.h;
    const int B = (int)std::max<int64_t>(1, std::min<int64_t>(t.batch, t.n));
    dev_buf<float> X(t.x, (size_t)t.n * t.d), Y(t.y, (size_t)t.n * t.h), theta(t.theta, (size_t)D.size);
    dev_buf<uint32_t> perm(t.perm, (size_t)t.epochs * t.n);
    dev_buf<double> m1((size_t)D.size), m2((size_t)D.size), grad((size_t)D.size), norm2(1), loss((size_t)t.epochs);
    dev_buf<double> A1((size_t)B * t.m), DZ((size_t)B * t.m), DOUT((size_t)B * t.h), rowloss((size_t)B);
    m1.zero();
    m2.zero();
    loss.zero();
    const int64_t steps_per_epoch = (t.n + B - 1) / B;
    const int64_t total           = (int64_t)t.epochs * steps_per_epoch;
    const size_t row_smem         = (size_t)(2 * t.m + 2 * t.h) * sizeof(double);
    int64_t step                  = 0;
    for (int e = 0; e < t.epochs; e++) {
        for (int64_t start = 0; start < t.n; start += B) {
            const int rows       = (int)std::min<int64_t>(B, t.n - start);
            const uint32_t * idx = perm.p + (int64_t)e * t.n + start;
            mlp_rows_kernel<<<rows, 128, row_smem>>>(D, X.p, Y.p, idx, rows, theta.p, A1.p, DZ.p, DOUT.p, rowloss.p);
            mlp_grad_w1_kernel<<<dim3((t.d + 127) / 128, t.m), 128>>>(D, X.p, idx, rows, DZ.p, grad.p);
            mlp_grad_small_kernel<<<1, 256>>>(D, rows, A1.p, DZ.p, DOUT.p, rowloss.p, grad.p, loss.p + e);
            mlp_norm_kernel<<<1, 1024>>>(grad.p, D.size, norm2.p);
            step++;
            const double lr = 0.5 * t.lr * (1 + std::cos(M_PI * (double)(step - 1) / (double)total));
            const double c1 = 1 - std::pow(t.beta1, (double)step), c2 = 1 - std::pow(t.beta2, (double)step);
            mlp_adamw_kernel<<<(unsigned)((D.size + 255) / 256), 256>>>(D.size, grad.p, norm2.p, t.clip, lr, t.beta1,
                                                                        t.beta2, c1, c2, t.eps, t.weight_decay, theta.p,
                                                                        m1.p, m2.p);
            check_launch();
        }
    }
    KVZAP_CK(cudaDeviceSynchronize());
    theta.download(t.theta);
    loss.download(t.epoch_loss);
    for (int e = 0; e < t.epochs; e++) t.epoch_loss[e] /= (double)t.n * t.h;
}

} // namespace

int kvzap_cuda_device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no device" error
        return 0;
    }
    return n;
}

bool kvzap_cuda_oracle_layer(const kvzap_oracle_layer & L, float * out, std::string & err) {
    try {
        oracle_layer(L, out);
        return true;
    } catch (const cuda_failure & f) {
        err = f.what;
        return false;
    }
}

bool kvzap_cuda_train_mlp(const kvzap_mlp_train & t, std::string & err) {
    try {
        train_mlp(t);
        return true;
    } catch (const cuda_failure & f) {
        err = f.what;
        return false;
    }
}
