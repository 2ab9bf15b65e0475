// The CUDA calibration kernels against their CPU twins on random inputs, without llama.cpp: the KVzip+ oracle of one
// layer (several shapes, context before, and overlapping, the queries) and two epochs of MLP training.
//   nvcc -O2 -std=c++17 -arch=sm_90 -Inative/kvzap cuda/calibration.cu native/kvzap/kvzap-oracle-cpu.cpp \
//        native/kvzap/kvzap-mlp-cpu.cpp scripts/gpu/calibration-check.cpp -o /tmp/calibration-check && /tmp/calibration-check
// Prints one line per check; exit code 1 if one fails (NaN never passes).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kvzap-compute.h"

static int failed = 0;

static double rel_error(const std::vector<float> & got, const std::vector<float> & want) {
    double num = 0, den = 0;
    for (size_t i = 0; i < want.size(); i++) {
        const double d = std::fabs((double) got[i] - want[i]);
        if (std::isnan(d)) return INFINITY;
        num = std::max(num, d);
        den = std::max(den, std::fabs((double) want[i]));
    }
    return den > 0 ? num / den : num;
}

static void report(const std::string & name, double err, double tol) {
    const bool ok = err <= tol;
    failed += !ok;
    std::printf("%s %s: relative error %.2e (tolerance %.0e)\n", ok ? "PASS" : "FAIL", name.c_str(), err, tol);
}

static std::vector<float> normal(size_t n, std::mt19937 & rng, float scale = 1.0f) {
    std::normal_distribution<float> N(0.0f, scale);
    std::vector<float> v(n);
    for (float & x : v) x = N(rng);
    return v;
}

static void oracle_case(int Hq, int Hkv, int d, int c0, int c1, int q0, int q1, int n_out, unsigned seed) {
    std::mt19937 rng(seed);
    const int nc = c1 - c0, nq = q1 - q0;
    auto K = normal((size_t) Hkv * q1 * d, rng), V = normal((size_t) Hkv * nc * d, rng), Q = normal((size_t) nq * Hq * d, rng, 1.5f);
    auto wo = normal((size_t) n_out * Hq * d, rng, 0.05f);
    std::vector<float> xnorm(nq);
    std::uniform_real_distribution<float> U(0.5f, 3.0f);
    for (float & x : xnorm) x = U(rng);
    std::vector<double> M((size_t) Hq * d * d);
    kvzap_oracle_gram(wo.data(), n_out, Hq, d, M.data(), 4);
    const kvzap_oracle_layer L = {Hq, Hkv, d, d, c0, c1, q0, q1, 1.0f / std::sqrt((float) d), K.data(), V.data(), Q.data(), xnorm.data(), M.data()};
    std::vector<float> cpu((size_t) nc * Hkv), gpu((size_t) nc * Hkv, -1.0f);
    kvzap_oracle_layer_cpu(L, cpu.data(), 8);
    std::string err;
    if (!kvzap_cuda_oracle_layer(L, gpu.data(), err)) {
        std::printf("FAIL oracle: %s\n", err.c_str());
        failed++;
        return;
    }
    char name[160];
    std::snprintf(name, sizeof name, "oracle cuda vs cpu: %d heads / %d KV, head dim %d, context [%d,%d), queries [%d,%d)", Hq, Hkv, d, c0, c1, q0, q1);
    report(name, rel_error(gpu, cpu), 1e-4);
}

static void mlp_case(int64_t n, int d, int m, int h, int epochs, int batch, unsigned seed) {
    std::mt19937 rng(seed);
    auto x = normal((size_t) n * d, rng), y = normal((size_t) n * h, rng);
    for (int64_t s = 0; s < n; s++) y[s * h] += std::tanh(x[s * d] + x[s * d + 1]);
    std::uniform_real_distribution<float> U(-1.0f, 1.0f);
    std::vector<float> theta((size_t) m * d + m + (size_t) h * m + h);
    for (size_t i = 0; i < theta.size(); i++) theta[i] = U(rng) / std::sqrt((float) (i < (size_t) m * d + m ? d : m));
    std::vector<uint32_t> perm((size_t) epochs * n);
    for (int e = 0; e < epochs; e++) {
        for (int64_t i = 0; i < n; i++) perm[e * n + i] = (uint32_t) i;
        std::shuffle(perm.begin() + e * n, perm.begin() + (e + 1) * n, rng);
    }
    std::vector<float> tc = theta, tg = theta;
    std::vector<double> lc(epochs), lg(epochs);
    kvzap_mlp_train t = {x.data(), y.data(), n, d, m, h, perm.data(), epochs, batch, 5e-3, 0.9, 0.999, 1e-8, 0.01, 1.0, tc.data(), lc.data()};
    kvzap_cpu_train_mlp(t, 4);
    t.theta = tg.data();
    t.epoch_loss = lg.data();
    std::string err;
    if (!kvzap_cuda_train_mlp(t, err)) {
        std::printf("FAIL mlp: %s\n", err.c_str());
        failed++;
        return;
    }
    char name[160];
    std::snprintf(name, sizeof name, "MLP %d epochs cuda vs cpu: %lld pairs, %d -> %d -> %d, batch %d (loss %.6f vs %.6f)", epochs, (long long) n, d, m, h,
                  batch, lc[epochs - 1], lg[epochs - 1]);
    report(name, rel_error(tg, tc), 1e-4);
}

int main() {
    std::printf("CUDA devices: %d\n", kvzap_cuda_device_count());
    oracle_case(8, 2, 64, 0, 300, 400, 700, 512, 1);       // the test-bed's shape; the context precedes the queries
    oracle_case(8, 2, 64, 0, 600, 400, 700, 512, 2);       // context and queries overlap: causality inside the tiles
    oracle_case(8, 4, 8, 5, 77, 90, 161, 64, 3);           // stories260K's shape, ragged tiles
    oracle_case(32, 8, 128, 0, 1000, 1030, 2030, 4096, 4); // Llama-3.1-8B's shape
    mlp_case(2000, 64, 8, 4, 2, 512, 5);
    mlp_case(3000, 512, 64, 2, 2, 512, 6);
    return failed > 0 ? 1 : 0;
}
