// AdamW training of the MLP surrogate on CPU threads: the same steps as the CUDA kernels (cuda/calibration.cu), in the
// same order, with float64 accumulation. Rows of a batch are spread over threads for the forward and backward pass,
// the rows of dL/dW1 over threads for its accumulation (each entry summed over the batch in row order).
#include "kvzap-compute.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

double gelu_erf(double z) {
    return 0.5 * z * std::erfc(-z * 0.70710678118654752440);
}

double gelu_erf_grad(double z) {
    return 0.5 * std::erfc(-z * 0.70710678118654752440) + z * 0.39894228040143267794 * std::exp(-0.5 * z * z);
}

template <typename F>
void parallel_for(int n_threads, int n, F && f) {
    n_threads     = std::max(1, std::min(n_threads, n));
    const int per = (n + n_threads - 1) / n_threads;
    kvzap_run_threads(n_threads, [&](int t) { f(std::min(n, t * per), std::min(n, (t + 1) * per)); });
}

} // namespace

void kvzap_cpu_train_mlp(const kvzap_mlp_train & t, int n_threads) {
    const int d = t.d, m = t.m, h = t.h;
    const int64_t oB1 = (int64_t)m * d, oW2 = oB1 + m, oB2 = oW2 + (int64_t)h * m, size = oB2 + h;
    const int B         = (int)std::max<int64_t>(1, std::min<int64_t>(t.batch, t.n));
    const int64_t total = (int64_t)t.epochs * ((t.n + B - 1) / B);
    float * theta       = t.theta;
    std::vector<double> grad((size_t)size), m1((size_t)size, 0.0), m2((size_t)size, 0.0);
    std::vector<double> w1t((size_t)d * m), z1((size_t)B * m), a1((size_t)B * m), dz((size_t)B * m),
        dout((size_t)B * h), rowloss((size_t)B);
    int64_t step = 0;
    for (int e = 0; e < t.epochs; e++) {
        const uint32_t * perm = t.perm + (int64_t)e * t.n;
        double loss_sum       = 0;
        for (int64_t start = 0; start < t.n; start += B) {
            const int rows = (int)std::min<int64_t>(B, t.n - start);
            // W1 transposed, so that a row's hidden pre-activations accumulate over inputs in contiguous strides
            for (int j = 0; j < m; j++) {
                for (int i = 0; i < d; i++) w1t[(size_t)i * m + j] = theta[(size_t)j * d + i];
            }
            parallel_for(n_threads, rows, [&](int r0, int r1) {
                for (int r = r0; r < r1; r++) {
                    const float * x = t.x + (int64_t)perm[start + r] * d;
                    const float * y = t.y + (int64_t)perm[start + r] * h;
                    double * z      = z1.data() + (size_t)r * m;
                    double * a      = a1.data() + (size_t)r * m;
                    for (int j = 0; j < m; j++) z[j] = theta[oB1 + j];
                    for (int i = 0; i < d; i++) {
                        const double xi  = x[i];
                        const double * w = w1t.data() + (size_t)i * m;
                        for (int j = 0; j < m; j++) z[j] += w[j] * xi;
                    }
                    for (int j = 0; j < m; j++) a[j] = gelu_erf(z[j]);
                    double l   = 0;
                    double * g = dout.data() + (size_t)r * h;
                    for (int k = 0; k < h; k++) {
                        double acc = theta[oB2 + k];
                        for (int j = 0; j < m; j++) acc += (double)theta[oW2 + (int64_t)k * m + j] * a[j];
                        const double err = acc - (double)y[k];
                        l += err * err;
                        g[k] = 2.0 * err / ((double)rows * h);
                    }
                    rowloss[r] = l;
                    for (int j = 0; j < m; j++) {
                        double da = 0;
                        for (int k = 0; k < h; k++) da += (double)theta[oW2 + (int64_t)k * m + j] * g[k];
                        dz[(size_t)r * m + j] = da * gelu_erf_grad(z[j]);
                    }
                }
            });
            for (int r = 0; r < rows; r++) loss_sum += rowloss[r];
            // dL/dW1 row by row of W1, each entry over the batch in row order
            parallel_for(n_threads, m, [&](int j0, int j1) {
                for (int j = j0; j < j1; j++) {
                    double * gw = grad.data() + (size_t)j * d;
                    std::fill(gw, gw + d, 0.0);
                    for (int r = 0; r < rows; r++) {
                        const double g = dz[(size_t)r * m + j];
                        if (g == 0.0) continue;
                        const float * x = t.x + (int64_t)perm[start + r] * d;
                        for (int i = 0; i < d; i++) gw[i] += g * x[i];
                    }
                }
            });
            // dL/db1, dL/dW2, dL/db2
            std::fill(grad.begin() + oB1, grad.end(), 0.0);
            for (int r = 0; r < rows; r++) {
                for (int j = 0; j < m; j++) grad[oB1 + j] += dz[(size_t)r * m + j];
                for (int k = 0; k < h; k++) {
                    const double g = dout[(size_t)r * h + k];
                    grad[oB2 + k] += g;
                    for (int j = 0; j < m; j++) grad[oW2 + (int64_t)k * m + j] += g * a1[(size_t)r * m + j];
                }
            }
            // clip the global norm, then AdamW with a cosine learning rate
            double norm2 = 0;
            for (int64_t k = 0; k < size; k++) norm2 += grad[k] * grad[k];
            const double norm  = std::sqrt(norm2);
            const double scale = norm > t.clip ? t.clip / (norm + 1e-6) : 1.0;
            step++;
            const double lr = 0.5 * t.lr * (1 + std::cos(M_PI * (double)(step - 1) / (double)total));
            const double c1 = 1 - std::pow(t.beta1, (double)step), c2 = 1 - std::pow(t.beta2, (double)step);
            for (int64_t k = 0; k < size; k++) {
                const double g  = grad[k] * scale;
                m1[k]           = t.beta1 * m1[k] + (1 - t.beta1) * g;
                m2[k]           = t.beta2 * m2[k] + (1 - t.beta2) * g * g;
                const double th = (double)theta[k] * (1 - lr * t.weight_decay);
                theta[k]        = (float)(th - (lr * (m1[k] / c1)) / (std::sqrt(m2[k] / c2) + t.eps));
            }
        }
        t.epoch_loss[e] = loss_sum / ((double)t.n * h);
    }
}
