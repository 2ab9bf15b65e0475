// Calibration compute exposed to JS that is not tied to a context: the ridge fit of the linear surrogate (CPU threads)
// and MLP surrogate training (CPU threads or CUDA). Both run off the JS thread.
#include "addon.h"

#include <climits>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

#include "kvzap-compute.h"
#include "options.h"
#include "ridge.h"

namespace kvzap {

namespace {

// trainMlp(x, y, theta, perm, {n, d, m, h, epochs, batch, lr, beta1, beta2, eps, weightDecay, clip, device, threads})
//   -> Promise<{theta: Float32Array, epochLoss: Float64Array}>; the inputs are copied, so JS may reuse them.
class TrainWorker : public PromiseWorker<Napi::AsyncWorker> {
public:
    TrainWorker(Napi::Env env, kvzap_mlp_train t, std::vector<float> x, std::vector<float> y, std::vector<float> theta,
                std::vector<uint32_t> perm, bool cuda, int threads) :
        PromiseWorker(env),
        t(t),
        x(std::move(x)),
        y(std::move(y)),
        theta(std::move(theta)),
        perm(std::move(perm)),
        loss((size_t)t.epochs),
        cuda(cuda),
        threads(threads) {}
    void Execute() override {
        t.x          = x.data();
        t.y          = y.data();
        t.theta      = theta.data();
        t.perm       = perm.data();
        t.epoch_loss = loss.data();
        std::string err;
        if (!cuda) {
            kvzap_cpu_train_mlp(t, threads);
        } else if (!kvzap_cuda_train_mlp(t, err)) {
            SetError("MLP training on CUDA failed: " + err);
        }
    }
    Napi::Value result() override {
        Napi::Env env        = Env();
        Napi::Object r       = Napi::Object::New(env);
        Napi::Float64Array l = Napi::Float64Array::New(env, loss.size());
        std::copy(loss.begin(), loss.end(), l.Data());
        r.Set("theta", to_f32_array(env, theta));
        r.Set("epochLoss", l);
        return r;
    }

private:
    kvzap_mlp_train t;
    std::vector<float> x, y, theta;
    std::vector<uint32_t> perm;
    std::vector<double> loss;
    bool cuda;
    int threads;
};

// ridgeFit(x, y, {n, d, h, lambdaScale, threads}) -> Promise<{weight: Float32Array [h][d], bias: Float32Array [h],
// lambda}>
class RidgeWorker : public PromiseWorker<Napi::AsyncWorker> {
public:
    RidgeWorker(Napi::Env env, std::vector<float> x, std::vector<float> y, int64_t n, int d, int h, double scale,
                int threads) :
        PromiseWorker(env), x(std::move(x)), y(std::move(y)), n(n), d(d), h(h), scale(scale), threads(threads) {}
    void Execute() override {
        if (!ridge_fit(x.data(), y.data(), n, d, h, scale, threads, r)) SetError(r.error);
    }
    Napi::Value result() override {
        Napi::Object o = Napi::Object::New(Env());
        o.Set("weight", to_f32_array(Env(), r.weight));
        o.Set("bias", to_f32_array(Env(), r.bias));
        o.Set("lambda", r.lambda);
        return o;
    }

private:
    std::vector<float> x, y;
    int64_t n;
    int d, h;
    double scale;
    int threads;
    ridge_result r;
};

template <typename T, napi_typedarray_type TYPE>
std::vector<T> copy_array(Napi::Env env, const Napi::Value & v, size_t want, const char * what) {
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TYPE) {
        throw Napi::TypeError::New(env, std::string(what) + " must be a typed array of the right type");
    }
    auto a = v.As<Napi::TypedArrayOf<T>>();
    if (a.ElementLength() != want) {
        throw Napi::RangeError::New(env, std::string(what) + " has " + std::to_string(a.ElementLength()) +
                                             " values, not " + std::to_string(want));
    }
    return std::vector<T>(a.Data(), a.Data() + want);
}

int default_threads() {
    return (int)std::max(1u, std::thread::hardware_concurrency());
}

Napi::Value train_mlp(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 5 || !info[4].IsObject())
        throw Napi::TypeError::New(env, "trainMlp(x, y, theta, perm, options)");
    const OptionReader r(info[4], "options");
    kvzap_mlp_train t = {};
    t.n               = r.integer("n", 1, INT32_MAX);
    t.d               = (int32_t)r.integer("d", 1, 1 << 20);
    t.m               = (int32_t)r.integer("m", 1, 65535); // a CUDA grid dimension
    t.h               = (int32_t)r.integer("h", 1, 4096);
    t.epochs          = (int32_t)r.integer("epochs", 1, 1 << 20);
    t.batch           = (int32_t)r.integer("batch", 1, 1 << 24);
    t.lr              = r.number("lr");
    t.beta1           = r.number("beta1");
    t.beta2           = r.number("beta2");
    t.eps             = r.number("eps");
    t.weight_decay    = r.number("weightDecay");
    t.clip            = r.number("clip");
    const bool cuda   = r.choice("device", { { "cpu", 0 }, { "cuda", 1 } }, 0) == 1;
    const int threads = (int)r.integer("threads", 1, 4096, default_threads());
    const size_t size = (size_t)t.m * t.d + t.m + (size_t)t.h * t.m + t.h;
    auto x            = copy_array<float, napi_float32_array>(env, info[0], (size_t)t.n * t.d, "x");
    auto y            = copy_array<float, napi_float32_array>(env, info[1], (size_t)t.n * t.h, "y");
    auto theta        = copy_array<float, napi_float32_array>(env, info[2], size, "theta");
    auto perm         = copy_array<uint32_t, napi_uint32_array>(env, info[3], (size_t)t.epochs * t.n, "perm");
    for (uint32_t p : perm) {
        if ((int64_t)p >= t.n) throw Napi::RangeError::New(env, "perm holds a row index out of range");
    }
    auto * w = new TrainWorker(env, t, std::move(x), std::move(y), std::move(theta), std::move(perm), cuda, threads);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

Napi::Value ridge_fit_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[2].IsObject()) throw Napi::TypeError::New(env, "ridgeFit(x, y, options)");
    const OptionReader r(info[2], "options");
    const int64_t n = r.integer("n", 1, INT32_MAX);
    const int d = (int)r.integer("d", 1, 1 << 16), h = (int)r.integer("h", 1, 4096);
    const int threads = (int)r.integer("threads", 1, 4096, default_threads());
    auto x            = copy_array<float, napi_float32_array>(env, info[0], (size_t)n * d, "x");
    auto y            = copy_array<float, napi_float32_array>(env, info[1], (size_t)n * h, "y");
    auto * w        = new RidgeWorker(env, std::move(x), std::move(y), n, d, h, r.number("lambdaScale", 1e-3), threads);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

} // namespace

Napi::Object init_calibration(Napi::Env env, Napi::Object exports) {
    exports.Set("ridgeFit", Napi::Function::New(env, ridge_fit_js));
    exports.Set("trainMlp", Napi::Function::New(env, train_mlp));
    return exports;
}

} // namespace kvzap
