// Shared pieces of the kvzap N-API addon: logging capture and small conversions.
#pragma once

#include <napi.h>

#include <memory>
#include <string>

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
    explicit ModelHolder(llama_model * m) : model(m) {}
    ~ModelHolder() {
        if (model) llama_model_free(model);
    }
    ModelHolder(const ModelHolder &) = delete;
    ModelHolder & operator=(const ModelHolder &) = delete;
};

// The weights of a JS Model object; throws a JS error if it is not a Model or was disposed.
std::shared_ptr<ModelHolder> model_holder(const Napi::Value & v);

}  // namespace kvzap
