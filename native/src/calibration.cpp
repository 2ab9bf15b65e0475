// Calibration compute exposed to JS that is not tied to a context: the ridge fit of the linear surrogate (CPU threads)
// and MLP surrogate training (CPU threads or CUDA). Both run off the JS thread.
#include "addon.h"

#include <cstring>
#include <thread>
#include <vector>

#include "kvzap-compute.h"
#include "ridge.h"

namespace kvzap {

namespace {

// trainMlp(x, y, theta, perm, {n, d, m, h, epochs, batch, lr, beta1, beta2, eps, weightDecay, clip, device, threads})
//   -> Promise<{theta: Float32Array, epochLoss: Float64Array}>; the inputs are copied, so JS may reuse them.
class TrainWorker : public Napi::AsyncWorker {
  public:
    TrainWorker(Napi::Env env, kvzap_mlp_train t, std::vector<float> x, std::vector<float> y, std::vector<float> theta,
                std::vector<uint32_t> perm, bool cuda, int threads)
        : Napi::AsyncWorker(env), deferred(Napi::Promise::Deferred::New(env)), t(t), x(std::move(x)), y(std::move(y)),
          theta(std::move(theta)), perm(std::move(perm)), loss((size_t) t.epochs), cuda(cuda), threads(threads) {}
    Napi::Promise promise() { return deferred.Promise(); }
    void Execute() override {
        t.x = x.data();
        t.y = y.data();
        t.theta = theta.data();
        t.perm = perm.data();
        t.epoch_loss = loss.data();
        std::string err;
        if (!cuda) {
            kvzap_cpu_train_mlp(t, threads);
        } else if (!kvzap_cuda_train_mlp(t, err)) {
            SetError("MLP training on CUDA failed: " + err);
        }
    }
    void OnOK() override {
        Napi::Env env = Env();
        Napi::Object r = Napi::Object::New(env);
        Napi::Float32Array th = Napi::Float32Array::New(env, theta.size());
        std::memcpy(th.Data(), theta.data(), theta.size() * sizeof(float));
        Napi::Float64Array l = Napi::Float64Array::New(env, loss.size());
        std::memcpy(l.Data(), loss.data(), loss.size() * sizeof(double));
        r.Set("theta", th);
        r.Set("epochLoss", l);
        deferred.Resolve(r);
    }
    void OnError(const Napi::Error & e) override { deferred.Reject(e.Value()); }

  private:
    Napi::Promise::Deferred deferred;
    kvzap_mlp_train t;
    std::vector<float> x, y, theta;
    std::vector<uint32_t> perm;
    std::vector<double> loss;
    bool cuda;
    int threads;
};

// ridgeFit(x, y, {n, d, h, lambdaScale, threads}) -> Promise<{weight: Float32Array [h][d], bias: Float32Array [h], lambda}>
class RidgeWorker : public Napi::AsyncWorker {
  public:
    RidgeWorker(Napi::Env env, std::vector<float> x, std::vector<float> y, int64_t n, int d, int h, double scale, int threads)
        : Napi::AsyncWorker(env), deferred(Napi::Promise::Deferred::New(env)), x(std::move(x)), y(std::move(y)), n(n), d(d), h(h),
          scale(scale), threads(threads) {}
    Napi::Promise promise() { return deferred.Promise(); }
    void Execute() override {
        if (!ridge_fit(x.data(), y.data(), n, d, h, scale, threads, r)) SetError(r.error);
    }
    void OnOK() override {
        Napi::Env env = Env();
        Napi::Object o = Napi::Object::New(env);
        Napi::Float32Array w = Napi::Float32Array::New(env, r.weight.size());
        std::memcpy(w.Data(), r.weight.data(), r.weight.size() * sizeof(float));
        Napi::Float32Array b = Napi::Float32Array::New(env, r.bias.size());
        std::memcpy(b.Data(), r.bias.data(), r.bias.size() * sizeof(float));
        o.Set("weight", w);
        o.Set("bias", b);
        o.Set("lambda", r.lambda);
        deferred.Resolve(o);
    }
    void OnError(const Napi::Error & e) override { deferred.Reject(e.Value()); }

  private:
    Napi::Promise::Deferred deferred;
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
        throw Napi::RangeError::New(env, std::string(what) + " has " + std::to_string(a.ElementLength()) + " values, not " + std::to_string(want));
    }
    return std::vector<T>(a.Data(), a.Data() + want);
}

Napi::Value train_mlp(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 5 || !info[4].IsObject()) throw Napi::TypeError::New(env, "trainMlp(x, y, theta, perm, options)");
    Napi::Object o = info[4].As<Napi::Object>();
    auto num = [&](const char * k) {
        Napi::Value v = o.Get(k);
        if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("options.") + k + " must be a number");
        return v.As<Napi::Number>().DoubleValue();
    };
    kvzap_mlp_train t = {};
    t.n = (int64_t) num("n");
    t.d = (int32_t) num("d");
    t.m = (int32_t) num("m");
    t.h = (int32_t) num("h");
    t.epochs = (int32_t) num("epochs");
    t.batch = (int32_t) num("batch");
    t.lr = num("lr");
    t.beta1 = num("beta1");
    t.beta2 = num("beta2");
    t.eps = num("eps");
    t.weight_decay = num("weightDecay");
    t.clip = num("clip");
    if (t.n < 1 || t.d < 1 || t.m < 1 || t.h < 1 || t.epochs < 1 || t.batch < 1) throw Napi::RangeError::New(env, "trainMlp: sizes must be positive");
    const std::string device = o.Get("device").IsString() ? o.Get("device").As<Napi::String>().Utf8Value() : "cpu";
    if (device != "cpu" && device != "cuda") throw Napi::TypeError::New(env, "options.device must be cpu or cuda");
    const int threads = o.Get("threads").IsNumber() ? o.Get("threads").As<Napi::Number>().Int32Value() : (int) std::max(1u, std::thread::hardware_concurrency());
    const size_t size = (size_t) t.m * t.d + t.m + (size_t) t.h * t.m + t.h;
    auto x = copy_array<float, napi_float32_array>(env, info[0], (size_t) t.n * t.d, "x");
    auto y = copy_array<float, napi_float32_array>(env, info[1], (size_t) t.n * t.h, "y");
    auto theta = copy_array<float, napi_float32_array>(env, info[2], size, "theta");
    auto perm = copy_array<uint32_t, napi_uint32_array>(env, info[3], (size_t) t.epochs * t.n, "perm");
    for (uint32_t p : perm) {
        if ((int64_t) p >= t.n) throw Napi::RangeError::New(env, "perm holds a row index out of range");
    }
    auto * w = new TrainWorker(env, t, std::move(x), std::move(y), std::move(theta), std::move(perm), device == "cuda", threads);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

Napi::Value ridge_fit_js(const Napi::CallbackInfo & info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[2].IsObject()) throw Napi::TypeError::New(env, "ridgeFit(x, y, options)");
    Napi::Object o = info[2].As<Napi::Object>();
    auto num = [&](const char * k, double def) {
        Napi::Value v = o.Get(k);
        if (v.IsUndefined()) return def;
        if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("options.") + k + " must be a number");
        return v.As<Napi::Number>().DoubleValue();
    };
    const int64_t n = (int64_t) num("n", 0);
    const int d = (int) num("d", 0), h = (int) num("h", 0);
    if (n < 1 || d < 1 || h < 1) throw Napi::RangeError::New(env, "ridgeFit: no pairs to fit");
    const int threads = (int) num("threads", (double) std::max(1u, std::thread::hardware_concurrency()));
    auto x = copy_array<float, napi_float32_array>(env, info[0], (size_t) n * d, "x");
    auto y = copy_array<float, napi_float32_array>(env, info[1], (size_t) n * h, "y");
    auto * w = new RidgeWorker(env, std::move(x), std::move(y), n, d, h, num("lambdaScale", 1e-3), threads);
    Napi::Promise p = w->promise();
    w->Queue();
    return p;
}

}  // namespace

Napi::Object init_calibration(Napi::Env env, Napi::Object exports) {
    exports.Set("ridgeFit", Napi::Function::New(env, ridge_fit_js));
    exports.Set("trainMlp", Napi::Function::New(env, train_mlp));
    return exports;
}

}  // namespace kvzap
