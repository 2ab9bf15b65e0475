#include "kvzap-capture.h"
#include "kvzap-compute.h"

#include <cmath>
#include <cstring>

#include "ggml-backend.h"
#include "llama-impl.h"

// ---- dense storage: every pair at slot (layer, head, position) ----

bool llama_kvzap_capture_memory::prepare_ubatch(const llama_ubatch & ub, kvzap_ubatch_plan & plan) {
    if (!begin_plan(ub, plan)) return false;
    const int32_t T  = (int32_t)ub.n_tokens;
    const int32_t q0 = ub.pos[0];
    for (int32_t il = 0; il < n_layer; il++) {
        for (int32_t h = 0; h < n_head_kv; h++) {
            for (int32_t t = 0; t < T; t++) {
                plan.new_slots[((size_t)il * T + t) * n_head_kv + h] = ((int64_t)il * n_head_kv + h) * n_ctx + q0 + t;
            }
            kvzap_head & hd                        = head(il, h);
            plan.n_old[(size_t)il * n_head_kv + h] = hd.len;
            for (int32_t t = 0; t < T; t++) {
                hd.pos.push_back(q0 + t);
                hd.score.push_back(NAN);
            }
            hd.len += T;
        }
    }
    plan.n_kv_ref = q0 + T;
    plan.nb_max   = 1;
    plan.block_table.assign((size_t)n_layer * n_head_kv, 0);
    n_pos = q0 + T;
    publish();
    return true;
}

bool llama_kvzap_capture_memory::seq_rm(llama_seq_id seq_id, llama_pos p0, llama_pos p1) {
    if (seq_id > 0) return false;
    if (p0 < 0) p0 = 0;
    if (p1 >= 0 && p1 < n_pos) return false;
    if (p0 == 0) {
        clear(true);
        return true;
    }
    if (p0 >= n_pos) return true;
    // The same refusal as the block store's, which has decided everything below n_pos - window by now (settle): a
    // pair of [p0 - window, p0) that the rule dropped would be missing there.
    const int32_t lo = std::max(0, p0 - params->window);
    for (int32_t p = lo; p < std::max(0, n_pos - params->window); p++) {
        for (int32_t il = 0; il < n_layer; il++) {
            for (int32_t h = 0; h < n_head_kv; h++) {
                if (!keep(il, h, p, score_at(il, h, p))) return false;
            }
        }
    }
    for (auto & hd : heads) {
        while (hd.len > 0 && hd.pos[hd.len - 1] >= p0) {
            hd.len--;
            hd.pos.pop_back();
            hd.score.pop_back();
        }
    }
    protected_pos.resize(p0);
    n_pos = p0;
    publish();
    return true;
}

// ---- KVzip+ oracle ----

// Rows [p0, p0 + n) of a [width, rows] tensor as f32 (converting f16/bf16 rows).
static void read_f32_rows(const ggml_tensor * t, int64_t row0, int64_t n, std::vector<float> & out) {
    const int64_t w = t->ne[0];
    out.resize((size_t)(n * w));
    std::vector<char> raw((size_t)(n * t->nb[1]));
    ggml_backend_tensor_get(t, raw.data(), (size_t)(row0 * t->nb[1]), raw.size());
    if (t->type == GGML_TYPE_F32) {
        memcpy(out.data(), raw.data(), out.size() * sizeof(float));
    } else {
        const auto * tr = ggml_get_type_traits(t->type);
        for (int64_t r = 0; r < n; r++) tr->to_float(raw.data() + r * t->nb[1], out.data() + r * w, w);
    }
}

bool llama_kvzap_capture_memory::oracle_scores(int32_t c0, int32_t c1, int32_t q0, int32_t q1, float * out,
                                               int n_threads, kvzap_device device, kvzap_device * used) const {
    // c1 <= q1: keys past the last query are seen by none (and the kernels read keys 0..q1 only)
    if (!params->oracle || c0 < 0 || c1 > q1 || c0 > c1 || q0 < 0 || q1 > n_pos || q0 > q1 || kq_scale == 0.0f)
        return false;
    const int32_t Hq = (int32_t)hparams.n_head(0);
    const int32_t nc = c1 - c0, nq = q1 - q0;
    std::fill(out, out + (size_t)n_layer * nc * n_head_kv, 0.0f);
    const bool have_cuda = device != KVZAP_DEVICE_CPU && kvzap_cuda_device_count() > 0;
    const bool cuda      = device == KVZAP_DEVICE_CUDA || (device == KVZAP_DEVICE_AUTO && have_cuda);
    if (device == KVZAP_DEVICE_CUDA && !have_cuda) {
        last_oracle_error = "no CUDA device: the addon was built without CUDA, or no GPU is visible";
        return false;
    }
    if (used) *used = cuda ? KVZAP_DEVICE_CUDA : KVZAP_DEVICE_CPU;
    if (nc == 0 || nq == 0) return true;
    std::vector<float> wrows, K, V, Q, X, rows, xnorm((size_t)nq);
    oracle_gram.resize((size_t)n_layer);
    for (int32_t il = 0; il < n_layer; il++) {
        if (oracle_gram[il].empty()) {
            const ggml_tensor * wo = model.layers[il].wo;
            if (!wo || wo->ne[0] != (int64_t)Hq * dv) {
                last_oracle_error = "the model's attention output projection has an unexpected shape";
                return false;
            }
            read_f32_rows(wo, 0, wo->ne[1], wrows);
            oracle_gram[il].resize((size_t)Hq * dv * dv);
            kvzap_oracle_gram(wrows.data(), wo->ne[1], Hq, dv, oracle_gram[il].data(), n_threads);
        }
        // keys of every position 0..q1 and values of the context, per KV head; queries and attn_norm norms
        K.resize((size_t)n_head_kv * q1 * dk);
        V.resize((size_t)n_head_kv * nc * dv);
        for (int32_t h = 0; h < n_head_kv; h++) {
            const int64_t base = ((int64_t)il * n_head_kv + h) * n_ctx;
            read_f32_rows(k_pool, base, q1, rows);
            std::copy(rows.begin(), rows.end(), K.begin() + (size_t)h * q1 * dk);
            read_f32_rows(v_pool, base + c0, nc, rows);
            std::copy(rows.begin(), rows.end(), V.begin() + (size_t)h * nc * dv);
        }
        read_f32_rows(queries[il], q0, nq, Q);
        read_f32_rows(hidden[il], q0, nq, X);
        for (int32_t j = 0; j < nq; j++) {
            double s = 0;
            for (int32_t d = 0; d < n_embd; d++) s += (double)X[(size_t)j * n_embd + d] * X[(size_t)j * n_embd + d];
            xnorm[j] = (float)std::sqrt(s);
        }
        const kvzap_oracle_layer L = {
            Hq, n_head_kv, dk,       dv,       c0,       c1,           q0,
            q1, kq_scale,  K.data(), V.data(), Q.data(), xnorm.data(), oracle_gram[il].data()
        };
        float * o   = out + (size_t)il * nc * n_head_kv;
        bool on_cpu = !cuda;
        if (cuda) {
            std::string err;
            if (!kvzap_cuda_oracle_layer(L, o, err)) {
                if (device == KVZAP_DEVICE_CUDA) {
                    last_oracle_error = "the CUDA oracle failed: " + err;
                    return false;
                }
                LLAMA_LOG_WARN("%s: the CUDA oracle failed (%s); layer %d on the CPU\n", __func__, err.c_str(), il);
                on_cpu = true;
                if (used) *used = KVZAP_DEVICE_CPU;
            }
        }
        if (on_cpu) kvzap_oracle_layer_cpu(L, o, n_threads);
    }
    return true;
}

bool kvzap_oracle_rows(const llama_memory_i * mem, int32_t il, int32_t p0, int32_t p1, std::vector<float> & q,
                       std::vector<float> & k, std::vector<float> & v) {
    const auto * m = dynamic_cast<const llama_kvzap_capture_memory *>(mem);
    if (!m || !m->params->oracle || il < 0 || il >= m->n_layer || p0 < 0 || p1 > m->positions() || p0 > p1)
        return false;
    read_f32_rows(m->queries[il], p0, p1 - p0, q);
    k.clear();
    v.clear();
    std::vector<float> rows;
    for (int32_t h = 0; h < m->n_head_kv; h++) {
        const int64_t base = ((int64_t)il * m->n_head_kv + h) * m->n_ctx;
        read_f32_rows(m->k_pool, base + p0, p1 - p0, rows);
        k.insert(k.end(), rows.begin(), rows.end());
        read_f32_rows(m->v_pool, base + p0, p1 - p0, rows);
        v.insert(v.end(), rows.begin(), rows.end());
    }
    return true;
}

bool kvzap_oracle_scores(const llama_memory_i * mem, int32_t c0, int32_t c1, int32_t q0, int32_t q1, float * out,
                         int n_threads, kvzap_device device, kvzap_device * used, std::string * err) {
    const auto * m = dynamic_cast<const llama_kvzap_capture_memory *>(mem);
    if (!m) {
        if (err) *err = "the session's memory is not an oracle memory";
        return false;
    }
    m->last_oracle_error.clear();
    const bool ok = m->oracle_scores(c0, c1, q0, q1, out, n_threads, device, used);
    if (!ok && err) *err = m->last_oracle_error;
    return ok;
}
