// The one reader of values passed from JS: every option and argument is checked here (type, range, finiteness), and
// a bad one becomes a JS TypeError/RangeError that names it, before anything reaches llama.cpp.
#pragma once

#include <napi.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "ggml.h"
#include "llama.h"

namespace kvzap {

// One JS value, named for the messages ("options.topK", "trim(tokens)").
double read_number(const Napi::Value & v, const std::string & name); // finite
double read_number(const Napi::Value & v, const std::string & name, double lo, double hi);
int64_t read_integer(const Napi::Value & v, const std::string & name, int64_t lo, int64_t hi);
bool read_bool(const Napi::Value & v, const std::string & name);
bool read_bool(const Napi::Value & v, const std::string & name, bool def); // def when undefined
std::string read_string(const Napi::Value & v, const std::string & name);
// One of `choices` (a JS string), as its value.
int read_enum(const Napi::Value & v, const std::string & name,
              std::initializer_list<std::pair<const char *, int>> choices);
std::vector<float> read_f32_array(const Napi::Value & v, const std::string & name);
std::vector<llama_token> read_tokens(const Napi::Value & v, const std::string & name, int32_t n_vocab);

// The KV element types the addon accepts ("f32", "f16", "bf16"): the ones both llama.cpp's cache and KVzap's
// attention read, so that no other ggml type can reach an abort in a kernel.
ggml_type read_kv_type(const Napi::Value & v, const std::string & name);

// Argument i of a call: undefined when it was not passed.
inline Napi::Value arg(const Napi::CallbackInfo & info, size_t i) {
    return i < info.Length() ? info[i] : info.Env().Undefined();
}

// The fields of a JS options object. A field that is undefined takes its default; a required one without a default
// throws. `undefined` for the whole object reads as {}.
class OptionReader {
public:
    OptionReader(const Napi::Value & v, std::string name);

    bool has(const char * k) const;
    Napi::Value get(const char * k) const;
    std::string name(const char * k) const { return prefix + "." + k; }

    double number(const char * k) const;
    double number(const char * k, double def) const;
    double number(const char * k, double lo, double hi, double def) const;
    int64_t integer(const char * k, int64_t lo, int64_t hi) const;
    int64_t integer(const char * k, int64_t lo, int64_t hi, int64_t def) const;
    bool boolean(const char * k, bool def) const;
    int choice(const char * k, std::initializer_list<std::pair<const char *, int>> choices, int def) const;
    int choice(const char * k, std::initializer_list<std::pair<const char *, int>> choices) const;
    ggml_type kv_type(const char * k, ggml_type def) const;
    // A nested options object (absent: an empty one).
    OptionReader object(const char * k) const;

    Napi::Env env;

private:
    Napi::Object o;
    std::string prefix;
};

} // namespace kvzap
