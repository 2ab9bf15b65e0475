// What a new Context is created with: llama.cpp's context parameters and KVzap's memory parameters, read from the
// options object JS passes.
#pragma once

#include <napi.h>

#include <memory>

#include "kvzap.h"
#include "llama.h"

namespace kvzap {

// {contextSize, batchSize, ubatchSize, threads, threadsBatch, flashAttention, typeK, typeV}; kv (when given) sets
// `kz` and the KV types.
// Every value is checked (options.h): a bad one throws a JS error naming it.
llama_context_params read_context_params(const Napi::Value & options, std::shared_ptr<kvzap_params> & kz);

} // namespace kvzap
