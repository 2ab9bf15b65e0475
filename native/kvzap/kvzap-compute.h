#pragma once
// Calibration compute, each on the CPU and on CUDA: the KVzip+ oracle of one layer (kvzap-oracle-cpu.cpp) and AdamW
// training of the MLP surrogate (kvzap-mlp-cpu.cpp). The CUDA side (cuda/calibration.cu) exists only in CUDA builds;
// elsewhere (kvzap-cuda-none.cpp) kvzap_cuda_* report that there is no device.

#include <cstdint>
#include <string>
#include <thread>
#include <vector>

// Runs f(t) for t in [0, n_threads), each on its own thread (t = 0 on the calling one), and returns when all are done.
template <typename F>
void kvzap_run_threads(int n_threads, F && f) {
    std::vector<std::thread> pool;
    for (int t = 1; t < n_threads; t++) pool.emplace_back([&f, t] { f(t); });
    f(0);
    for (auto & th : pool) th.join();
}

// One layer's inputs to the oracle, as f32 on the host.
struct kvzap_oracle_layer {
    int32_t n_head, n_head_kv, dk, dv;
    int32_t c0, c1; // context positions scored
    int32_t q0, q1; // query positions (their softmax runs over keys 0..j)
    float kq_scale;
    const float * K;     // [n_head_kv][q1][dk]: keys of positions 0..q1
    const float * V;     // [n_head_kv][c1 - c0][dv]: values of the context
    const float * Q;     // [q1 - q0][n_head][dk]: post-RoPE queries
    const float * xnorm; // [q1 - q0]: ||attn_norm row|| of each query
    const double * M;    // [n_head][dv][dv]: kvzap_oracle_gram of the layer's output projection
};

// M[g] = W_gᵀ W_g for the slice W_g of the attention output projection wo [n_out][n_head * dv] that head g's output
// meets, so that ||W_O^(g) v||² = vᵀ M[g] v. Threads take heads. Depends only on the weights: computed once per layer.
void kvzap_oracle_gram(const float * wo, int64_t n_out, int32_t n_head, int32_t dv, double * M, int n_threads);

// out[(i - c0) * n_head_kv + h] = max over j in [q0, q1), j >= i, and query heads g of KV head h of
// softmax_j(q_g,j . k / sqrt)[i] * ||W_O^(g) v_i|| / ||x_j||. Two passes over the keys; nothing of size nq x q1 is
// kept.
void kvzap_oracle_layer_cpu(const kvzap_oracle_layer & L, float * out, int n_threads);

// Number of CUDA devices this build can use (0 in CPU builds).
int kvzap_cuda_device_count();

// The same on CUDA device 0. False with err set when there is no device or CUDA fails.
bool kvzap_cuda_oracle_layer(const kvzap_oracle_layer & L, float * out, std::string & err);

// AdamW training of y ~ W2 gelu_erf(W1 x + b1) + b2 on standardised pairs, one step per batch of `batch` rows taken in
// the order perm[epoch][...], the global gradient norm clipped to `clip`, a cosine learning rate over all steps and
// decoupled weight decay (as PyTorch's AdamW). theta = W1 [m][d], b1 [m], W2 [h][m], b2 [h]: the initial values in,
// the trained ones out. epoch_loss[e] = the epoch's mean squared error per output.
struct kvzap_mlp_train {
    const float * x; // [n][d]
    const float * y; // [n][h]
    int64_t n;
    int32_t d, m, h;
    const uint32_t * perm; // [epochs][n]
    int32_t epochs, batch;
    double lr, beta1, beta2, eps, weight_decay, clip;
    float * theta;
    double * epoch_loss; // [epochs]
};

// On CPU threads (kvzap-mlp-cpu.cpp) and on CUDA device 0 (false with err when there is no device or CUDA fails).
void kvzap_cpu_train_mlp(const kvzap_mlp_train & t, int n_threads);
bool kvzap_cuda_train_mlp(const kvzap_mlp_train & t, std::string & err);
