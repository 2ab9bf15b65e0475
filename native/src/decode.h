// The decode loop every context worker runs: tokens into memory, in batches, abortable between batches.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "llama.h"

namespace kvzap {

// Decodes `toks` at positions n_past.. of sequence 0, in batches of n_batch, with logits for the last token only
// (all of them with all_logits). Advances n_past by what memory holds afterwards; `done` counts tokens decoded and
// `progress(done)` runs after each batch. Returns 0, 1 (aborted) or a negative llama_decode status.
int decode_tokens(llama_context * ctx, int32_t & n_past, const std::atomic<bool> & abort, const llama_token * toks,
                  int32_t n, int32_t & done, const std::function<void(int32_t)> & progress, bool all_logits = false);

} // namespace kvzap
