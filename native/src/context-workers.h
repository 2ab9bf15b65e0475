// The work a Context does off the JS thread: prompt evaluation, generation and KVzip+ oracle scores. Each worker
// keeps the JS context alive while it runs and releases it (Context::end) before its promise settles.
#pragma once

#include <string>
#include <vector>

#include "context.h"
#include "kvzap.h"
#include "sampler.h"

namespace kvzap {

template <typename Base>
class ContextWorker : public PromiseWorker<Base> {
public:
    ContextWorker(Napi::Env env, Context * c) : PromiseWorker<Base>(env), c(c), self(Napi::Persistent(c->Value())) {}

protected:
    void settled() override { c->end(); }
    // A failed llama_decode, with what llama.cpp logged about it.
    void fail_decode(int status) {
        const std::string why = take_last_error();
        this->SetError("llama_decode failed (" + std::to_string(status) + ")" + (why.empty() ? "" : ": " + why));
    }
    Context * c;

private:
    Napi::ObjectReference self;
};

// Resolves to {tokens, ms, aborted, logits?}; progress(done) every 256 tokens and at the end.
class EvaluateWorker : public ContextWorker<Napi::AsyncProgressQueueWorker<int32_t>> {
public:
    EvaluateWorker(Napi::Env env, Context * c, std::vector<llama_token> toks, Napi::Function progress, bool all_logits);
    void Execute(const ExecutionProgress & p) override;
    void OnProgress(const int32_t * d, size_t n) override;
    Napi::Value result() override;

private:
    std::vector<llama_token> toks;
    Napi::FunctionReference on_progress;
    int32_t done = 0;
    int status   = 0;
    double ms    = 0;
    bool all_logits;
    std::vector<float> logits;
};

// Resolves to {tokens: Int32Array, decoded, reason, ms}; on_token(token) for each sampled token, in order.
class GenerateWorker : public ContextWorker<Napi::AsyncProgressQueueWorker<llama_token>> {
public:
    GenerateWorker(Napi::Env env, Context * c, SamplerParams sp, int32_t max_tokens, Napi::Function on_token);
    void Execute(const ExecutionProgress & p) override;
    void OnProgress(const llama_token * toks, size_t n) override;
    Napi::Value result() override;

private:
    SamplerParams sp;
    int32_t max_tokens;
    Napi::FunctionReference on_token_ref;
    std::vector<llama_token> generated;
    int32_t decoded = 0;
    std::string reason;
    double ms = 0;
};

// Resolves to {scores: Float32Array [layer][i - c0][kv head], device}.
class OracleWorker : public ContextWorker<Napi::AsyncWorker> {
public:
    OracleWorker(Napi::Env env, Context * c, int32_t c0, int32_t c1, int32_t q0, int32_t q1, kvzap_device device) :
        ContextWorker(env, c), c0(c0), c1(c1), q0(q0), q1(q1), device(device) {}
    void Execute() override;
    Napi::Value result() override;

private:
    int32_t c0, c1, q0, q1;
    kvzap_device device, used = KVZAP_DEVICE_CPU;
    std::vector<float> out;
};

} // namespace kvzap
