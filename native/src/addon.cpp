// Entry point of the kvzap addon.
#include "addon.h"

#include <atomic>
#include <cstdio>
#include <deque>
#include <mutex>
#include "kvzap-compute.h"
#include "options.h"

namespace kvzap {

static std::mutex g_log_mutex;
static std::deque<std::string> g_errors;
static std::string g_line;
static std::atomic<bool> g_verbose{ false };

static void log_callback(ggml_log_level level, const char * text, void * /*user*/) {
    if (g_verbose.load()) {
        fputs(text, stderr);
    }
    std::lock_guard<std::mutex> lock(g_log_mutex);
    static ggml_log_level last_level = GGML_LOG_LEVEL_NONE;
    if (level != GGML_LOG_LEVEL_CONT) {
        last_level = level;
        g_line.clear();
    }
    if (last_level != GGML_LOG_LEVEL_ERROR && last_level != GGML_LOG_LEVEL_WARN) {
        return;
    }
    g_line += text;
    if (!g_line.empty() && g_line.back() == '\n') {
        g_line.pop_back();
        if (last_level == GGML_LOG_LEVEL_ERROR) {
            g_errors.push_back(g_line);
            while (g_errors.size() > 8) {
                g_errors.pop_front();
            }
        }
        g_line.clear();
    }
}

void record_error(const std::string & message) {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    g_errors.push_back(message);
}

void install_log_capture() {
    llama_log_set(log_callback, nullptr);
}

void set_verbose(bool verbose) {
    g_verbose = verbose;
}

std::string take_last_error() {
    std::lock_guard<std::mutex> lock(g_log_mutex);
    std::string out;
    for (const auto & e : g_errors) {
        if (!out.empty()) {
            out += "; ";
        }
        out += e;
    }
    g_errors.clear();
    return out;
}

static Napi::Value set_verbose_js(const Napi::CallbackInfo & info) {
    set_verbose(read_bool(arg(info, 0), "setVerbose(verbose)", false));
    return info.Env().Undefined();
}

// {name, description, type, freeBytes, totalBytes}: the driver's figures for one ggml device
static Napi::Object device_object(Napi::Env env, ggml_backend_dev_t dev) {
    size_t free_mem = 0, total_mem = 0;
    ggml_backend_dev_memory(dev, &free_mem, &total_mem);
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", ggml_backend_dev_name(dev));
    d.Set("description", ggml_backend_dev_description(dev));
    d.Set("type", ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_GPU ? "gpu" : "cpu");
    d.Set("freeBytes", (double)free_mem);
    d.Set("totalBytes", (double)total_mem);
    return d;
}

// gpuDevice(index) -> the index-th GPU's device object, or undefined: what systemInfo() says of it, without the rest
// (llama.cpp's system string, every device), for the live VRAM figures sampled during a run
static Napi::Value gpu_device(const Napi::CallbackInfo & info) {
    Napi::Env env      = info.Env();
    const int64_t want = read_integer(arg(info, 0), "gpuDevice(index)", 0, INT32_MAX);
    int64_t k          = 0;
    for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
        ggml_backend_dev_t dev = ggml_backend_dev_get(i);
        if (ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_GPU) continue;
        if (k++ == want) return device_object(env, dev);
    }
    return env.Undefined();
}

static Napi::Value system_info(const Napi::CallbackInfo & info) {
    Napi::Env env  = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("backend", KVZAP_BACKEND);
    o.Set("engine", KVZAP_ENGINE);
    o.Set("llamaVersion", llama_version());
    o.Set("gpuOffload", llama_supports_gpu_offload());
    o.Set("mmap", llama_supports_mmap());
    o.Set("system", llama_print_system_info());
    Napi::Array devs = Napi::Array::New(env);
    for (size_t i = 0; i < ggml_backend_dev_count(); i++)
        devs.Set((uint32_t)i, device_object(env, ggml_backend_dev_get(i)));
    o.Set("devices", devs);
    // CUDA devices the calibration kernels (oracle, MLP training) can use: 0 in CPU builds
    o.Set("cudaDevices", kvzap_cuda_device_count());
    return o;
}

// ggmlTypes() -> [{id, name, typeSize, blockSize}] for every ggml tensor type, for sizing GGUF tensors in JS
static Napi::Value ggml_types(const Napi::CallbackInfo & info) {
    Napi::Env env   = info.Env();
    Napi::Array out = Napi::Array::New(env);
    uint32_t k      = 0;
    for (int t = 0; t < GGML_TYPE_COUNT; t++) {
        const char * name = ggml_type_name((ggml_type)t);
        if (!name || ggml_blck_size((ggml_type)t) == 0) continue;
        Napi::Object o = Napi::Object::New(env);
        o.Set("id", t);
        o.Set("name", name);
        o.Set("typeSize", (double)ggml_type_size((ggml_type)t));
        o.Set("blockSize", (double)ggml_blck_size((ggml_type)t));
        out.Set(k++, o);
    }
    return out;
}

static Napi::Object init(Napi::Env env, Napi::Object exports) {
    // Capture first: backends (CUDA) report while they register.
    install_log_capture();
    llama_backend_init();
    exports.Set("setVerbose", Napi::Function::New(env, set_verbose_js));
    exports.Set("systemInfo", Napi::Function::New(env, system_info));
    exports.Set("gpuDevice", Napi::Function::New(env, gpu_device));
    exports.Set("ggmlTypes", Napi::Function::New(env, ggml_types));
    init_model(env, exports);
    init_context(env, exports);
    init_calibration(env, exports);
    return exports;
}

} // namespace kvzap

static Napi::Object kvzap_init(Napi::Env env, Napi::Object exports) {
    return kvzap::init(env, exports);
}

NODE_API_MODULE(kvzap, kvzap_init)
