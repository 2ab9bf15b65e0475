// Shared pieces of the kvzap N-API addon: logging capture and small conversions.
#pragma once

#include <napi.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "llama-cpp.h"
#include "llama.h"

namespace kvzap {

// llama.cpp reports why a load failed only through its log; the addon keeps the last error lines so that a
// failure can be explained to the user in one message.
void install_log_capture();
std::string take_last_error();
void record_error(const std::string & message);
void set_verbose(bool verbose);

Napi::Object init_model(Napi::Env env, Napi::Object exports);
Napi::Object init_context(Napi::Env env, Napi::Object exports);
Napi::Object init_calibration(Napi::Env env, Napi::Object exports);

// Weights shared by a Model and its contexts: freed when the last owner lets go, so disposing a model while a
// context still computes (or finalizers running in any order at exit) can never free weights in use.
struct ModelHolder {
    llama_model * model = nullptr;
    explicit ModelHolder(llama_model_ptr m) : model(m.release()) {}
    ~ModelHolder() {
        if (model) llama_model_free(model);
    }
    ModelHolder(const ModelHolder &)             = delete;
    ModelHolder & operator=(const ModelHolder &) = delete;
};

// A JS typed array holding a copy of v.
inline Napi::Float32Array to_f32_array(Napi::Env env, const std::vector<float> & v) {
    Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
    std::copy(v.begin(), v.end(), a.Data());
    return a;
}

// Work done off the JS thread (Base: an N-API async worker) whose outcome settles a promise: result() builds what it
// resolves to, an error rejects it, and settled() runs first either way.
template <typename Base>
class PromiseWorker : public Base {
public:
    explicit PromiseWorker(Napi::Env env) : Base(env), deferred(Napi::Promise::Deferred::New(env)) {}
    Napi::Promise promise() { return deferred.Promise(); }
    void OnOK() final {
        settled();
        try {
            deferred.Resolve(result());
        } catch (const Napi::Error & e) {
            deferred.Reject(e.Value());
        } catch (const std::exception & e) {
            deferred.Reject(Napi::Error::New(this->Env(), e.what()).Value());
        }
    }
    void OnError(const Napi::Error & e) final {
        settled();
        deferred.Reject(e.Value());
    }

protected:
    virtual Napi::Value result() = 0;
    virtual void settled() {}

private:
    Napi::Promise::Deferred deferred;
};

// The weights of a JS Model object; throws a JS error if it is not a Model or was disposed.
std::shared_ptr<ModelHolder> model_holder(const Napi::Value & v);

} // namespace kvzap
