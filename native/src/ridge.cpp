// Ridge regression for the linear surrogate, per layer: y ≈ W x + b for all heads at once, the intercept unpenalised
// (by centring) and W solving (XcᵀXc + λI) W = XcᵀYc with λ = lambda_scale · mean(diag XcᵀXc). Float64 throughout; the
// Gram matrix is accumulated by threads that each own a set of its rows, so the result does not depend on the thread
// count, then factored by Cholesky.
#include "ridge.h"

#include <algorithm>
#include <cmath>
#include <thread>

namespace kvzap {

bool ridge_fit(const float * x, const float * y, int64_t n, int d, int h, double lambda_scale, int n_threads, ridge_result & r) {
    if (n < 1 || d < 1 || h < 1) {
        r.error = "no pairs to fit";
        return false;
    }
    std::vector<double> mx((size_t) d, 0.0), my((size_t) h, 0.0);
    for (int64_t s = 0; s < n; s++) {
        for (int i = 0; i < d; i++) mx[i] += x[s * d + i];
        for (int k = 0; k < h; k++) my[k] += y[s * h + k];
    }
    for (double & v : mx) v /= (double) n;
    for (double & v : my) v /= (double) n;

    // upper triangle of XcᵀXc and XcᵀYc; thread t owns rows i with i mod 2T in {t, 2T-1-t}, which balances the triangle
    std::vector<double> G((size_t) d * d, 0.0), B((size_t) d * h, 0.0);
    n_threads = std::max(1, std::min(n_threads, d));
    const int64_t CHUNK = 64;
    auto work = [&](int t) {
        std::vector<int> rows;
        for (int i = 0; i < d; i++) {
            const int m = i % (2 * n_threads);
            if (m == t || m == 2 * n_threads - 1 - t) rows.push_back(i);
        }
        std::vector<double> cx((size_t) CHUNK * d), cy((size_t) CHUNK * h);
        for (int64_t s0 = 0; s0 < n; s0 += CHUNK) {
            const int64_t c = std::min(CHUNK, n - s0);
            for (int64_t s = 0; s < c; s++) {
                for (int i = 0; i < d; i++) cx[s * d + i] = (double) x[(s0 + s) * d + i] - mx[i];
                for (int k = 0; k < h; k++) cy[s * h + k] = (double) y[(s0 + s) * h + k] - my[k];
            }
            for (int i : rows) {
                double * g = G.data() + (size_t) i * d;
                double * b = B.data() + (size_t) i * h;
                for (int64_t s = 0; s < c; s++) {
                    const double xi = cx[s * d + i];
                    if (xi == 0.0) continue;
                    const double * row = cx.data() + s * d;
                    for (int j = i; j < d; j++) g[j] += xi * row[j];
                    for (int k = 0; k < h; k++) b[k] += xi * cy[s * h + k];
                }
            }
        }
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < n_threads; t++) pool.emplace_back(work, t);
    work(0);
    for (auto & t : pool) t.join();
    for (int i = 0; i < d; i++) {
        for (int j = 0; j < i; j++) G[(size_t) i * d + j] = G[(size_t) j * d + i];
    }
    double trace = 0;
    for (int i = 0; i < d; i++) trace += G[(size_t) i * d + i];
    // a floor keeps λ positive when every input is constant (then W is 0 and b the mean)
    r.lambda = std::max(lambda_scale * (trace / d), 1e-12);
    for (int i = 0; i < d; i++) G[(size_t) i * d + i] += r.lambda;

    // G = L Lᵀ in place (lower triangle)
    for (int j = 0; j < d; j++) {
        double * Lj = G.data() + (size_t) j * d;
        double s = Lj[j];
        for (int k = 0; k < j; k++) s -= Lj[k] * Lj[k];
        if (!(s > 0)) {
            r.error = "the regularised Gram matrix is not positive definite (pivot " + std::to_string(j) + ")";
            return false;
        }
        const double dj = std::sqrt(s);
        Lj[j] = dj;
        for (int i = j + 1; i < d; i++) {
            double * Li = G.data() + (size_t) i * d;
            double v = Li[j];
            for (int k = 0; k < j; k++) v -= Li[k] * Lj[k];
            Li[j] = v / dj;
        }
    }
    r.weight.assign((size_t) h * d, 0.0f);
    r.bias.assign((size_t) h, 0.0f);
    std::vector<double> z((size_t) d), w((size_t) d);
    for (int k = 0; k < h; k++) {
        for (int i = 0; i < d; i++) {
            double s = B[(size_t) i * h + k];
            for (int q = 0; q < i; q++) s -= G[(size_t) i * d + q] * z[q];
            z[i] = s / G[(size_t) i * d + i];
        }
        for (int i = d - 1; i >= 0; i--) {
            double s = z[i];
            for (int q = i + 1; q < d; q++) s -= G[(size_t) q * d + i] * w[q];
            w[i] = s / G[(size_t) i * d + i];
        }
        double b = my[k];
        for (int i = 0; i < d; i++) {
            r.weight[(size_t) k * d + i] = (float) w[i];
            b -= w[i] * mx[i];
        }
        r.bias[k] = (float) b;
    }
    return true;
}

}  // namespace kvzap
