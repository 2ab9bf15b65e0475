#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvzap {

struct ridge_result {
    std::vector<float> weight; // [h][d]
    std::vector<float> bias;   // [h]
    double lambda = 0;         // in the units of XcᵀXc (summed over the pairs)
    std::string error;
};

// The lower Cholesky factor of a symmetric positive definite d x d matrix (row-major, both triangles filled), in place
// in its lower triangle; false with error when a pivot is not positive. The upper triangle is left as it was.
bool cholesky_in_place(std::vector<double> & A, int d, int n_threads, std::string & error);

// x [n][d], y [n][h]; see ridge.cpp. False with r.error when there is nothing to fit or the system is singular.
bool ridge_fit(const float * x, const float * y, int64_t n, int d, int h, double lambda_scale, int n_threads,
               ridge_result & r);

} // namespace kvzap
