// An inference context as JS sees it: KV memory, prompt evaluation and streamed generation, all heavy work off the
// JS thread (context-workers.h). One evaluation runs at a time; dispose() during one frees the context when it ends.
#pragma once

#include "addon.h"

#include <atomic>
#include <cstdint>

namespace kvzap {

class Context : public Napi::ObjectWrap<Context> {
public:
    static Napi::FunctionReference ctor;
    llama_context * ctx = nullptr;
    std::shared_ptr<ModelHolder> model;
    std::atomic<bool> abort_flag{ false };
    bool busy            = false;
    bool dispose_pending = false;
    bool kvzap_active    = false;
    int32_t n_past       = 0; // tokens held in memory for sequence 0

    static Napi::Object Init(Napi::Env env, Napi::Object exports);

    // new Context(model, {contextSize, batchSize, ubatchSize, threads, threadsBatch, flashAttention, typeK, typeV, kv})
    explicit Context(const Napi::CallbackInfo & info);
    ~Context() override { free_ctx(); }

    void free_ctx();
    // Claims the context for work off the JS thread (throws if disposed or busy); end() releases it.
    void begin(Napi::Env env);
    void end();
    // Throws unless the context exists and no work runs on it.
    void check_ready(Napi::Env env) const;

    Napi::Value Evaluate(const Napi::CallbackInfo & info);
    Napi::Value Generate(const Napi::CallbackInfo & info);
    Napi::Value OracleScores(const Napi::CallbackInfo & info);
    Napi::Value Abort(const Napi::CallbackInfo & info);
    Napi::Value Logits(const Napi::CallbackInfo & info);
    Napi::Value Trim(const Napi::CallbackInfo & info);
    Napi::Value Clear(const Napi::CallbackInfo & info);
    Napi::Value MemoryStats(const Napi::CallbackInfo & info);
    Napi::Value KvStats(const Napi::CallbackInfo & info);
    Napi::Value KvScores(const Napi::CallbackInfo & info);
    Napi::Value KvHidden(const Napi::CallbackInfo & info);
    Napi::Value SetEvicting(const Napi::CallbackInfo & info);
    Napi::Value OracleRows(const Napi::CallbackInfo & info);
    Napi::Value SaveState(const Napi::CallbackInfo & info);
    Napi::Value LoadState(const Napi::CallbackInfo & info);
    Napi::Value InfoJs(const Napi::CallbackInfo & info);
    Napi::Value Dispose(const Napi::CallbackInfo & info);

private:
    Napi::Value rows(const Napi::CallbackInfo & info, bool hidden);
};

} // namespace kvzap
