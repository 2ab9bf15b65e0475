// Capture memories, for tests and calibration: dense per-position storage of every pair (nothing is ever removed),
// attended by stock ggml ops with explicit masks. `reference` masks each head by the same visibility rule as the
// block store (the oracle the block store is tested against); `oracle` masks causally and also keeps the queries and
// attn_norm rows, from which KVzip+ scores are computed (calibration).
#pragma once

#include "kvzap-memory.h"

class llama_kvzap_capture_memory : public llama_kvzap_memory {
public:
    using llama_kvzap_memory::llama_kvzap_memory;

    bool check_ubatches(const std::vector<llama_ubatch> & ubatches) override { return check_positions(ubatches); }
    bool prepare_ubatch(const llama_ubatch & ub, kvzap_ubatch_plan & plan) override;
    void settle() override { publish(); }
    bool seq_rm(llama_seq_id seq_id, llama_pos p0, llama_pos p1) override;

    // KVzip+ scores (kvzap_oracle_scores); false with last_oracle_error.
    bool oracle_scores(int32_t c0, int32_t c1, int32_t q0, int32_t q1, float * out, int n_threads, kvzap_device device,
                       kvzap_device * used) const;

    mutable std::string last_oracle_error;
    mutable std::vector<std::vector<double>> oracle_gram; // per layer, W_O's per-head Gram matrices (once)
};
