// The decode loop (see decode.h).
#include "decode.h"

#include <algorithm>
#include <exception>

#include "addon.h"

namespace kvzap {

namespace {

// A llama_batch freed however the loop ends.
struct batch_guard {
    llama_batch batch;
    explicit batch_guard(int32_t n) : batch(llama_batch_init(n, 0, 1)) {}
    ~batch_guard() { llama_batch_free(batch); }
    batch_guard(const batch_guard &)             = delete;
    batch_guard & operator=(const batch_guard &) = delete;
};

} // namespace

int decode_tokens(llama_context * ctx, int32_t & n_past, const std::atomic<bool> & abort, const llama_token * toks,
                  int32_t n, int32_t & done, const std::function<void(int32_t)> & progress, bool all_logits) {
    const int32_t n_batch = (int32_t)llama_n_batch(ctx);
    batch_guard guard(n_batch);
    llama_batch & batch = guard.batch;
    int status          = 0;
    done                = 0;
    while (done < n) {
        if (abort.load()) {
            status = 1;
            break;
        }
        int32_t m      = std::min(n_batch, n - done);
        batch.n_tokens = m;
        for (int32_t i = 0; i < m; i++) {
            batch.token[i]     = toks[done + i];
            batch.pos[i]       = n_past + i;
            batch.n_seq_id[i]  = 1;
            batch.seq_id[i][0] = 0;
            batch.logits[i]    = all_logits || (done + i == n - 1);
        }
        int rc;
        try {
            rc = llama_decode(ctx, batch);
        } catch (const std::exception & e) {
            record_error(e.what());
            rc = -3;
        }
        if (rc != 0) {
            // 2: aborted; ubatches already processed stay in memory, so re-read how many tokens it holds
            status         = rc == 2 ? 1 : (rc < 0 ? rc : -rc);
            llama_pos pmax = llama_memory_seq_pos_max(llama_get_memory(ctx), 0);
            int32_t kept   = pmax < 0 ? 0 : pmax + 1;
            done += std::max(0, kept - n_past);
            n_past = kept;
            break;
        }
        n_past += m;
        done += m;
        if (progress) progress(done);
    }
    return status;
}

} // namespace kvzap
