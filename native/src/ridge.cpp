// Ridge regression for the linear surrogate, per layer: y ≈ W x + b for all heads at once, the intercept unpenalised
// (by centring) and W solving (XcᵀXc + λI) W = XcᵀYc with λ = lambda_scale · mean(diag XcᵀXc). Float64 throughout; the
// Gram matrix is accumulated by threads that each own a set of its rows, so the result does not depend on the thread
// count, then factored by a blocked Cholesky on threads.
#include "ridge.h"

#include "kvzap-compute.h"

#include <algorithm>
#include <cmath>

namespace kvzap {

namespace {

// Runs f(i) for i in [i0, i1) on n_threads threads, interleaved so that uneven rows share out evenly.
template <typename F>
void parallel_rows(int n_threads, int i0, int i1, F && f) {
    const int n = i1 - i0;
    n_threads   = std::max(1, std::min(n_threads, n / 16)); // a thread for fewer than 16 rows costs more than it saves
    auto work   = [&](int t) {
        for (int i = i0 + t; i < i1; i += n_threads) f(i);
    };
    kvzap_run_threads(n_threads, work);
}

double dot(const double * a, const double * b, int n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += a[k] * b[k];
        s1 += a[k + 1] * b[k + 1];
        s2 += a[k + 2] * b[k + 2];
        s3 += a[k + 3] * b[k + 3];
    }
    for (; k < n; k++) s0 += a[k] * b[k];
    return (s0 + s1) + (s2 + s3);
}

} // namespace

// A = L Lᵀ in place in the lower triangle of the symmetric d x d matrix A, by blocks of CHOL_BLOCK columns: factor the
// diagonal block, solve the rows below it, update the trailing matrix; the last two spread over threads by rows.
constexpr int CHOL_BLOCK = 96;

bool cholesky_in_place(std::vector<double> & A, int d, int n_threads, std::string & error) {
    double * a = A.data();
    for (int k0 = 0; k0 < d; k0 += CHOL_BLOCK) {
        const int k1 = std::min(d, k0 + CHOL_BLOCK), nb = k1 - k0;
        for (int j = k0; j < k1; j++) {
            double * Lj    = a + (size_t)j * d;
            const double s = Lj[j] - dot(Lj + k0, Lj + k0, j - k0);
            if (!(s > 0)) {
                error = "the regularised Gram matrix is not positive definite (pivot " + std::to_string(j) + ")";
                return false;
            }
            Lj[j] = std::sqrt(s);
            for (int i = j + 1; i < k1; i++) {
                double * Li = a + (size_t)i * d;
                Li[j]       = (Li[j] - dot(Li + k0, Lj + k0, j - k0)) / Lj[j];
            }
        }
        // rows below the block: L[i][k0..k1) solves L[i][k0..k1) L[k0..k1)ᵀ = A[i][k0..k1)
        parallel_rows(n_threads, k1, d, [&](int i) {
            double * Li = a + (size_t)i * d;
            for (int j = k0; j < k1; j++) {
                const double * Lj = a + (size_t)j * d;
                Li[j]             = (Li[j] - dot(Li + k0, Lj + k0, j - k0)) / Lj[j];
            }
        });
        // trailing matrix: A[i][j] -= L[i][k0..k1) . L[j][k0..k1) for k1 <= j <= i
        parallel_rows(n_threads, k1, d, [&](int i) {
            double * Li = a + (size_t)i * d;
            for (int j = k1; j <= i; j++) Li[j] -= dot(Li + k0, a + (size_t)j * d + k0, nb);
        });
    }
    return true;
}

bool ridge_fit(const float * x, const float * y, int64_t n, int d, int h, double lambda_scale, int n_threads,
               ridge_result & r) {
    if (n < 1 || d < 1 || h < 1) {
        r.error = "no pairs to fit";
        return false;
    }
    std::vector<double> mx((size_t)d, 0.0), my((size_t)h, 0.0);
    for (int64_t s = 0; s < n; s++) {
        for (int i = 0; i < d; i++) mx[i] += x[s * d + i];
        for (int k = 0; k < h; k++) my[k] += y[s * h + k];
    }
    for (double & v : mx) v /= (double)n;
    for (double & v : my) v /= (double)n;

    // upper triangle of XcᵀXc and XcᵀYc; thread t owns rows i with i mod 2T in {t, 2T-1-t}, which balances the triangle
    std::vector<double> G((size_t)d * d, 0.0), B((size_t)d * h, 0.0);
    n_threads           = std::max(1, std::min(n_threads, d));
    const int64_t CHUNK = 64;
    auto work           = [&](int t) {
        std::vector<int> rows;
        for (int i = 0; i < d; i++) {
            const int m = i % (2 * n_threads);
            if (m == t || m == 2 * n_threads - 1 - t) rows.push_back(i);
        }
        std::vector<double> cx((size_t)CHUNK * d), cy((size_t)CHUNK * h);
        for (int64_t s0 = 0; s0 < n; s0 += CHUNK) {
            const int64_t c = std::min(CHUNK, n - s0);
            for (int64_t s = 0; s < c; s++) {
                for (int i = 0; i < d; i++) cx[s * d + i] = (double)x[(s0 + s) * d + i] - mx[i];
                for (int k = 0; k < h; k++) cy[s * h + k] = (double)y[(s0 + s) * h + k] - my[k];
            }
            for (int i : rows) {
                double * g = G.data() + (size_t)i * d;
                double * b = B.data() + (size_t)i * h;
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
    kvzap_run_threads(n_threads, work);
    for (int i = 0; i < d; i++) {
        for (int j = 0; j < i; j++) G[(size_t)i * d + j] = G[(size_t)j * d + i];
    }
    double trace = 0;
    for (int i = 0; i < d; i++) trace += G[(size_t)i * d + i];
    // a floor keeps λ positive when every input is constant (then W is 0 and b the mean)
    r.lambda = std::max(lambda_scale * (trace / d), 1e-12);
    for (int i = 0; i < d; i++) G[(size_t)i * d + i] += r.lambda;

    if (!cholesky_in_place(G, d, n_threads, r.error)) return false;
    r.weight.assign((size_t)h * d, 0.0f);
    r.bias.assign((size_t)h, 0.0f);
    std::vector<double> z((size_t)d), w((size_t)d);
    for (int k = 0; k < h; k++) {
        for (int i = 0; i < d; i++) {
            double s = B[(size_t)i * h + k];
            for (int q = 0; q < i; q++) s -= G[(size_t)i * d + q] * z[q];
            z[i] = s / G[(size_t)i * d + i];
        }
        for (int i = d - 1; i >= 0; i--) {
            double s = z[i];
            for (int q = i + 1; q < d; q++) s -= G[(size_t)q * d + i] * w[q];
            w[i] = s / G[(size_t)i * d + i];
        }
        double b = my[k];
        for (int i = 0; i < d; i++) {
            r.weight[(size_t)k * d + i] = (float)w[i];
            b -= w[i] * mx[i];
        }
        r.bias[k] = (float)b;
    }
    return true;
}

} // namespace kvzap
