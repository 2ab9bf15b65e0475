// The one reader of values passed from JS (see options.h).
#include "options.h"

#include <cmath>
#include <cstdio>

namespace kvzap {

static std::string describe(const Napi::Value & v) {
    if (v.IsUndefined()) return "undefined";
    if (v.IsNull()) return "null";
    if (v.IsNumber()) {
        const double x = v.As<Napi::Number>().DoubleValue();
        if (std::isnan(x)) return "NaN";
        if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
        char buf[32];
        snprintf(buf, sizeof(buf), "%.17g", x);
        return buf;
    }
    if (v.IsString()) {
        // a message names the value; it does not repeat a whole document
        std::string t = v.As<Napi::String>().Utf8Value();
        if (t.size() > 40) {
            size_t n = 37;
            while (n > 0 && ((unsigned char)t[n] & 0xC0) == 0x80) n--; // not inside a UTF-8 sequence
            t = t.substr(0, n) + "...";
        }
        return "\"" + t + "\"";
    }
    if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? "true" : "false";
    if (v.IsTypedArray()) return "a typed array";
    if (v.IsArray()) return "an array";
    if (v.IsFunction()) return "a function";
    return "an object";
}

static std::string range_text(double lo, double hi) {
    char buf[80];
    snprintf(buf, sizeof(buf), "%.17g..%.17g", lo, hi);
    return buf;
}

double read_number(const Napi::Value & v, const std::string & name) {
    const double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
    if (!std::isfinite(x)) throw Napi::TypeError::New(v.Env(), name + " must be a finite number, got " + describe(v));
    return x;
}

double read_number(const Napi::Value & v, const std::string & name, double lo, double hi) {
    const double x = read_number(v, name);
    if (x < lo || x > hi)
        throw Napi::RangeError::New(v.Env(), name + " must be in " + range_text(lo, hi) + ", got " + describe(v));
    return x;
}

int64_t read_integer(const Napi::Value & v, const std::string & name, int64_t lo, int64_t hi) {
    const double x = read_number(v, name);
    if (x != std::floor(x) || x < (double)lo || x > (double)hi) {
        throw Napi::RangeError::New(v.Env(), name + " must be an integer in " + std::to_string(lo) + ".." +
                                                 std::to_string(hi) + ", got " + describe(v));
    }
    return (int64_t)x;
}

bool read_bool(const Napi::Value & v, const std::string & name) {
    if (!v.IsBoolean()) throw Napi::TypeError::New(v.Env(), name + " must be true or false, got " + describe(v));
    return v.As<Napi::Boolean>().Value();
}

bool read_bool(const Napi::Value & v, const std::string & name, bool def) {
    return v.IsUndefined() ? def : read_bool(v, name);
}

std::string read_string(const Napi::Value & v, const std::string & name) {
    if (!v.IsString()) throw Napi::TypeError::New(v.Env(), name + " must be a string, got " + describe(v));
    return v.As<Napi::String>().Utf8Value();
}

int read_enum(const Napi::Value & v, const std::string & name,
              std::initializer_list<std::pair<const char *, int>> choices) {
    std::string list;
    for (const auto & c : choices) list += (list.empty() ? "" : ", ") + std::string(c.first);
    if (v.IsString()) {
        const std::string s = v.As<Napi::String>().Utf8Value();
        for (const auto & c : choices) {
            if (s == c.first) return c.second;
        }
    }
    throw Napi::TypeError::New(v.Env(), name + " must be one of " + list + ", got " + describe(v));
}

std::vector<float> read_f32_array(const Napi::Value & v, const std::string & name) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw Napi::TypeError::New(v.Env(), name + " must be a Float32Array, got " + describe(v));
    }
    Napi::Float32Array a = v.As<Napi::Float32Array>();
    return std::vector<float>(a.Data(), a.Data() + a.ElementLength());
}

std::vector<llama_token> read_tokens(const Napi::Value & v, const std::string & name, int32_t n_vocab) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
        throw Napi::TypeError::New(v.Env(), name + " must be an Int32Array of token ids, got " + describe(v));
    }
    Napi::Int32Array a = v.As<Napi::Int32Array>();
    std::vector<llama_token> toks(a.Data(), a.Data() + a.ElementLength());
    for (llama_token t : toks) {
        if (t < 0 || t >= n_vocab)
            throw Napi::RangeError::New(v.Env(), name + " holds a token id out of range: " + std::to_string(t));
    }
    return toks;
}

ggml_type read_kv_type(const Napi::Value & v, const std::string & name) {
    return (ggml_type)read_enum(
        v, name,
        { { "f16", GGML_TYPE_F16 }, { "f32", GGML_TYPE_F32 }, { "bf16", GGML_TYPE_BF16 }, { "q8_0", GGML_TYPE_Q8_0 } });
}

OptionReader::OptionReader(const Napi::Value & v, std::string name) : env(v.Env()), prefix(std::move(name)) {
    if (v.IsUndefined()) {
        o = Napi::Object::New(env);
    } else if (v.IsObject() && !v.IsArray() && !v.IsFunction() && !v.IsTypedArray()) {
        o = v.As<Napi::Object>();
    } else {
        throw Napi::TypeError::New(env, prefix + " must be an object, got " + describe(v));
    }
}

Napi::Value OptionReader::get(const char * k) const {
    return o.Get(k);
}

bool OptionReader::has(const char * k) const {
    return !get(k).IsUndefined();
}

double OptionReader::number(const char * k) const {
    return read_number(get(k), name(k));
}

double OptionReader::number(const char * k, double def) const {
    return has(k) ? number(k) : def;
}

double OptionReader::number(const char * k, double lo, double hi, double def) const {
    return has(k) ? read_number(get(k), name(k), lo, hi) : def;
}

int64_t OptionReader::integer(const char * k, int64_t lo, int64_t hi) const {
    return read_integer(get(k), name(k), lo, hi);
}

int64_t OptionReader::integer(const char * k, int64_t lo, int64_t hi, int64_t def) const {
    return has(k) ? integer(k, lo, hi) : def;
}

bool OptionReader::boolean(const char * k, bool def) const {
    return has(k) ? read_bool(get(k), name(k)) : def;
}

int OptionReader::choice(const char * k, std::initializer_list<std::pair<const char *, int>> choices) const {
    return read_enum(get(k), name(k), choices);
}

int OptionReader::choice(const char * k, std::initializer_list<std::pair<const char *, int>> choices, int def) const {
    return has(k) ? choice(k, choices) : def;
}

ggml_type OptionReader::kv_type(const char * k, ggml_type def) const {
    return has(k) ? read_kv_type(get(k), name(k)) : def;
}

OptionReader OptionReader::object(const char * k) const {
    return OptionReader(get(k), name(k));
}

} // namespace kvzap
