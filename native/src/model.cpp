// A loaded GGUF model: load off the main thread, metadata, tokenizer, chat template.
#include "addon.h"

#include "ggml-backend.h"

#include <atomic>
#include <climits>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "options.h"

namespace kvzap {

class Model : public Napi::ObjectWrap<Model> {
public:
    static Napi::FunctionReference ctor;
    std::shared_ptr<ModelHolder> holder;

    static Napi::Object Init(Napi::Env env, Napi::Object exports) {
        Napi::Function fn = DefineClass(env, "Model",
                                        {
                                            StaticMethod("load", &Model::Load),
                                            InstanceMethod("info", &Model::Info),
                                            InstanceMethod("meta", &Model::Meta),
                                            InstanceMethod("tokenize", &Model::Tokenize),
                                            InstanceMethod("detokenize", &Model::Detokenize),
                                            InstanceMethod("tokenPiece", &Model::TokenPiece),
                                            InstanceMethod("isEog", &Model::IsEog),
                                            InstanceMethod("applyChatTemplate", &Model::ApplyChatTemplate),
                                            InstanceMethod("dispose", &Model::Dispose),
                                        });
        ctor              = Napi::Persistent(fn);
        ctor.SuppressDestruct();
        exports.Set("Model", fn);
        return exports;
    }

    explicit Model(const Napi::CallbackInfo & info) : Napi::ObjectWrap<Model>(info) {}
    const llama_model * checked(Napi::Env env) const {
        if (!holder) {
            throw Napi::Error::New(env, "the model has been disposed");
        }
        return holder->model;
    }

    const llama_vocab * vocab(Napi::Env env) const { return llama_model_get_vocab(checked(env)); }

    // Model.load(path, {gpuLayers, useMmap}, onProgress?) -> {promise: Promise<Model>, abort()}: abort() stops the
    // load at the next tensor and the promise rejects with "the model load was aborted"
    static Napi::Value Load(const Napi::CallbackInfo & info);

    Napi::Value Info(const Napi::CallbackInfo & info) {
        Napi::Env env         = info.Env();
        const llama_model * m = checked(env);
        const llama_vocab * v = llama_model_get_vocab(m);
        Napi::Object o        = Napi::Object::New(env);
        char buf[512];
        llama_model_desc(m, buf, sizeof(buf));
        o.Set("description", buf);
        o.Set("layers", llama_model_n_layer(m));
        o.Set("heads", llama_model_n_head(m));
        o.Set("kvHeads", llama_model_n_head_kv(m));
        o.Set("embeddingSize", llama_model_n_embd(m));
        o.Set("contextLength", llama_model_n_ctx_train(m));
        o.Set("parameters", (double)llama_model_n_params(m));
        o.Set("sizeBytes", (double)llama_model_size(m));
        o.Set("vocabSize", llama_vocab_n_tokens(v));
        o.Set("bos", llama_vocab_bos(v));
        o.Set("eos", llama_vocab_eos(v));
        o.Set("addBos", llama_vocab_get_add_bos(v));
        o.Set("recurrent", llama_model_is_recurrent(m) || llama_model_is_hybrid(m));
        o.Set("hasEncoder", llama_model_has_encoder(m));
        const char * tmpl = llama_model_chat_template(m, nullptr);
        o.Set("chatTemplate", tmpl ? Napi::Value(Napi::String::New(env, tmpl)) : env.Null());
        return o;
    }

    Napi::Value Meta(const Napi::CallbackInfo & info) {
        Napi::Env env         = info.Env();
        const llama_model * m = checked(env);
        Napi::Object o        = Napi::Object::New(env);
        std::vector<char> key(256), val(4096);
        int n = llama_model_meta_count(m);
        for (int i = 0; i < n; i++) {
            if (llama_model_meta_key_by_index(m, i, key.data(), key.size()) < 0) continue;
            int len = llama_model_meta_val_str_by_index(m, i, val.data(), val.size());
            if (len < 0) continue;
            if ((size_t)len >= val.size()) {
                val.resize(len + 1);
                llama_model_meta_val_str_by_index(m, i, val.data(), val.size());
            }
            o.Set(key.data(), val.data());
        }
        return o;
    }

    // tokenize(text, addSpecial, parseSpecial) -> Int32Array
    Napi::Value Tokenize(const Napi::CallbackInfo & info) {
        Napi::Env env         = info.Env();
        const llama_vocab * v = vocab(env);
        std::string text      = read_string(arg(info, 0), "tokenize(text)");
        bool add_special      = read_bool(arg(info, 1), "tokenize(addSpecial)", false);
        bool parse_special    = read_bool(arg(info, 2), "tokenize(parseSpecial)", false);
        std::vector<llama_token> toks(text.size() + 8);
        int n = llama_tokenize(v, text.data(), (int32_t)text.size(), toks.data(), (int32_t)toks.size(), add_special,
                               parse_special);
        if (n < 0) {
            toks.resize(-n);
            n = llama_tokenize(v, text.data(), (int32_t)text.size(), toks.data(), (int32_t)toks.size(), add_special,
                               parse_special);
        }
        if (n < 0) {
            throw Napi::Error::New(env, "tokenization failed (input too large)");
        }
        Napi::Int32Array out = Napi::Int32Array::New(env, n);
        std::copy(toks.begin(), toks.begin() + n, out.Data());
        return out;
    }

    // detokenize(Int32Array, removeSpecial, unparseSpecial) -> string
    Napi::Value Detokenize(const Napi::CallbackInfo & info) {
        Napi::Env env                       = info.Env();
        const llama_vocab * v               = vocab(env);
        const std::vector<llama_token> toks = read_tokens(arg(info, 0), "detokenize(tokens)", llama_vocab_n_tokens(v));
        bool remove_special                 = read_bool(arg(info, 1), "detokenize(removeSpecial)", false);
        bool unparse_special                = read_bool(arg(info, 2), "detokenize(unparseSpecial)", false);
        std::string out(toks.size() * 8 + 16, '\0');
        int n = llama_detokenize(v, toks.data(), (int32_t)toks.size(), out.data(), (int32_t)out.size(), remove_special,
                                 unparse_special);
        if (n < 0) {
            out.resize(-n);
            n = llama_detokenize(v, toks.data(), (int32_t)toks.size(), out.data(), (int32_t)out.size(), remove_special,
                                 unparse_special);
        }
        out.resize(n < 0 ? 0 : n);
        return Napi::String::New(env, out);
    }

    // tokenPiece(token, special) -> Buffer (raw bytes: a piece may be part of a multi-byte character)
    Napi::Value TokenPiece(const Napi::CallbackInfo & info) {
        Napi::Env env         = info.Env();
        const llama_vocab * v = vocab(env);
        const llama_token t =
            (llama_token)read_integer(arg(info, 0), "tokenPiece(token)", 0, llama_vocab_n_tokens(v) - 1);
        bool special = read_bool(arg(info, 1), "tokenPiece(special)", false);
        char buf[256];
        int n = llama_token_to_piece(v, t, buf, sizeof(buf), 0, special);
        if (n < 0) n = 0;
        return Napi::Buffer<char>::Copy(env, buf, n);
    }

    Napi::Value IsEog(const Napi::CallbackInfo & info) {
        Napi::Env env         = info.Env();
        const llama_vocab * v = vocab(env);
        return Napi::Boolean::New(env, llama_vocab_is_eog(v, (llama_token)read_integer(arg(info, 0), "isEog(token)", 0,
                                                                                       llama_vocab_n_tokens(v) - 1)));
    }

    // applyChatTemplate([{role, content}], addAssistant, template?) -> string | null (null: no usable template)
    Napi::Value ApplyChatTemplate(const Napi::CallbackInfo & info) {
        Napi::Env env         = info.Env();
        const llama_model * m = checked(env);
        if (!arg(info, 0).IsArray())
            throw Napi::TypeError::New(env, "applyChatTemplate(messages) must be an array of {role, content}");
        Napi::Array msgs = info[0].As<Napi::Array>();
        bool add_ass     = read_bool(arg(info, 1), "applyChatTemplate(addAssistant)", false);
        std::string tmpl_override;
        const char * tmpl = nullptr;
        if (!arg(info, 2).IsUndefined()) {
            tmpl_override = read_string(info[2], "applyChatTemplate(template)");
            tmpl          = tmpl_override.c_str();
        } else {
            tmpl = llama_model_chat_template(m, nullptr);
        }
        if (!tmpl) {
            return env.Null();
        }
        std::vector<std::string> roles, contents;
        for (uint32_t i = 0; i < msgs.Length(); i++) {
            const OptionReader msg(msgs.Get(i), "messages[" + std::to_string(i) + "]");
            roles.push_back(read_string(msg.get("role"), msg.name("role")));
            contents.push_back(read_string(msg.get("content"), msg.name("content")));
        }
        std::vector<llama_chat_message> chat;
        size_t total = 0;
        for (size_t i = 0; i < roles.size(); i++) {
            chat.push_back({ roles[i].c_str(), contents[i].c_str() });
            total += roles[i].size() + contents[i].size();
        }
        std::string out(total * 2 + 1024, '\0');
        int n = llama_chat_apply_template(tmpl, chat.data(), chat.size(), add_ass, out.data(), (int32_t)out.size());
        if (n > (int)out.size()) {
            out.resize(n);
            n = llama_chat_apply_template(tmpl, chat.data(), chat.size(), add_ass, out.data(), (int32_t)out.size());
        }
        if (n < 0) {
            return env.Null();
        }
        out.resize(n);
        return Napi::String::New(env, out);
    }

    Napi::Value Dispose(const Napi::CallbackInfo & info) {
        holder.reset();
        return info.Env().Undefined();
    }
};

Napi::FunctionReference Model::ctor;

// Whether the CPU backend offers llama.cpp's AMX weight buffers: its AMX matmul crashes on this fork's pinned
// release (SIGSEGV in ggml_backend_amx_mul_mat with Q8_0 weights on a Sapphire Rapids host; ggml-org/llama.cpp#20824),
// so on such CPUs weights stay in plain buffers.
static bool cpu_has_amx_bufts() {
    ggml_backend_dev_t cpu = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
    if (!cpu) return false;
    auto get = (ggml_backend_dev_get_extra_bufts_t)ggml_backend_reg_get_proc_address(
        ggml_backend_dev_backend_reg(cpu), "ggml_backend_dev_get_extra_bufts");
    if (!get) return false;
    for (ggml_backend_buffer_type_t * b = get(cpu); b && *b; b++) {
        if (std::string(ggml_backend_buft_name(*b)) == "AMX") return true;
    }
    return false;
}

// Loads the weights off the JS thread; the model is owned (llama_model_ptr) until a JS Model takes it, so a load that
// fails, is aborted or never reaches JS frees what it loaded.
class LoadWorker : public PromiseWorker<Napi::AsyncProgressQueueWorker<float>> {
public:
    LoadWorker(Napi::Env env, std::string path, int gpu_layers, bool use_mmap, Napi::Function progress,
               std::shared_ptr<std::atomic<bool>> abort) :
        PromiseWorker(env), path(std::move(path)), gpu_layers(gpu_layers), use_mmap(use_mmap), abort(std::move(abort)) {
        if (!progress.IsEmpty()) {
            on_progress = Napi::Persistent(progress);
        }
    }

    void Execute(const ExecutionProgress & progress) override {
        llama_model_params mp = llama_model_default_params();
        mp.n_gpu_layers       = gpu_layers;
        if (cpu_has_amx_bufts()) mp.use_extra_bufts = false;
        mp.load_mode = use_mmap ? mp.load_mode : LLAMA_LOAD_MODE_NONE;
        struct cb_data {
            const ExecutionProgress * p;
            const std::atomic<bool> * abort;
            float last;
        } data{ &progress, abort.get(), -1.0f };
        // returning false makes llama.cpp stop at the next tensor and free what it loaded
        mp.progress_callback = [](float f, void * ud) -> bool {
            auto * d = static_cast<cb_data *>(ud);
            if (d->abort->load()) return false;
            if (f - d->last >= 0.02f || f >= 1.0f) {
                d->last = f;
                d->p->Send(&f, 1);
            }
            return true;
        };
        mp.progress_callback_user_data = &data;
        take_last_error();
        if (!abort->load()) loaded.reset(llama_model_load_from_file(path.c_str(), mp));
        if (abort->load()) {
            loaded.reset();
            take_last_error();
            SetError("the model load was aborted");
        } else if (!loaded) {
            std::string why = take_last_error();
            SetError(why.empty() ? "llama.cpp could not load the model" : why);
        }
    }

    void OnProgress(const float * data, size_t count) override {
        if (!on_progress.IsEmpty() && count > 0) {
            on_progress.Call({ Napi::Number::New(Env(), data[count - 1]) });
        }
    }

    Napi::Value result() override {
        // abort() before the promise settles always wins, even when the load itself finished first
        if (abort->load()) {
            loaded.reset();
            throw Napi::Error::New(Env(), "the model load was aborted");
        }
        Napi::Object obj           = Model::ctor.New({});
        Model::Unwrap(obj)->holder = std::make_shared<ModelHolder>(std::move(loaded));
        return obj;
    }

private:
    std::string path;
    int gpu_layers;
    bool use_mmap;
    std::shared_ptr<std::atomic<bool>> abort;
    Napi::FunctionReference on_progress;
    llama_model_ptr loaded;
};

Napi::Value Model::Load(const Napi::CallbackInfo & info) {
    Napi::Env env          = info.Env();
    const std::string path = read_string(arg(info, 0), "Model.load(path)");
    const OptionReader r(arg(info, 1), "options");
    const int gpu_layers = (int)r.integer("gpuLayers", 0, INT32_MAX, 0);
    const bool use_mmap  = r.boolean("useMmap", true);
    Napi::Function progress;
    if (!arg(info, 2).IsUndefined()) {
        if (!info[2].IsFunction()) throw Napi::TypeError::New(env, "Model.load(onProgress) must be a function");
        progress = info[2].As<Napi::Function>();
    }
    auto abort = std::make_shared<std::atomic<bool>>(false);
    // owned here until queued: an N-API async worker deletes itself once it has settled
    auto w              = std::make_unique<LoadWorker>(env, path, gpu_layers, use_mmap, progress, abort);
    Napi::Object handle = Napi::Object::New(env);
    handle.Set("promise", w->promise());
    handle.Set("abort", Napi::Function::New(
                            env,
                            [abort](const Napi::CallbackInfo & ci) {
                                abort->store(true);
                                return ci.Env().Undefined();
                            },
                            "abort"));
    w.release()->Queue();
    return handle;
}

std::shared_ptr<ModelHolder> model_holder(const Napi::Value & v) {
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Model::ctor.Value())) {
        throw Napi::TypeError::New(v.Env(), "expected a Model");
    }
    std::shared_ptr<ModelHolder> h = Model::Unwrap(v.As<Napi::Object>())->holder;
    if (!h) {
        throw Napi::Error::New(v.Env(), "the model has been disposed");
    }
    return h;
}

Napi::Object init_model(Napi::Env env, Napi::Object exports) {
    return Model::Init(env, exports);
}

} // namespace kvzap
