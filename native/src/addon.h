// Shared pieces of the kvzap N-API addon: logging capture and small conversions.
#pragma once

#include <napi.h>

#include <string>

#include "llama.h"

namespace kvzap {

// llama.cpp reports why a load failed only through its log; the addon keeps the last error lines so that a
// failure can be explained to the user in one message.
void install_log_capture();
std::string take_last_error();
void set_verbose(bool verbose);

Napi::Object init_model(Napi::Env env, Napi::Object exports);
Napi::Object init_context(Napi::Env env, Napi::Object exports);

class Model;
Model * unwrap_model(const Napi::Value & v);
const llama_model * model_ptr(Model * m);

}  // namespace kvzap
