// GGML_OP_KVZAP_ATTN in ggml's CUDA backend: maps the op's tensors onto kvzap_attn_cuda (kvzap-attn.cu), with the
// split-K scratch from the backend's pool, on the backend's stream. Compiled into the ggml-cuda target (as the CPU
// kernel is into ggml-cpu); native/patches/0003 calls these two functions from the op dispatch and supports_op.
#include "common.cuh"
#include "kvzap-attn.cuh"

static bool kvzap_kv_type_of(ggml_type t, kvzap_kv_type & out) {
    if (t == GGML_TYPE_F16) {
        out = KVZAP_KV_F16;
        return true;
    }
    if (t == GGML_TYPE_Q8_0) {
        out = KVZAP_KV_Q8_0;
        return true;
    }
    return false;
}

bool ggml_cuda_kvzap_attn_supported(int device, const ggml_tensor * op) {
    const int cc = ggml_cuda_info().devices[device].cc;
    if (!GGML_CUDA_CC_IS_NVIDIA(cc)) return false;
    const ggml_tensor *q = op->src[0], *k = op->src[1], *v = op->src[2];
    kvzap_kv_type type;
    if (!kvzap_kv_type_of(k->type, type) || v->type != k->type) return false;
    if (q->type != GGML_TYPE_F32 || op->type != GGML_TYPE_F32 || q->nb[0] != sizeof(float)) return false;
    // a pool in host memory (the model's layers on the CPU) is read where it lives: the scheduler would otherwise run
    // the op here after a larger batch's matmuls and copy the pool's whole reserved (mostly uncommitted) range
    // (the graph's views of the pool get their buffer only when allocated: ask the pool tensor itself)
    for (const ggml_tensor * t : { k, v }) {
        const ggml_tensor * base = t->view_src ? t->view_src : t;
        if (base->buffer && ggml_backend_buffer_is_host(base->buffer)) return false;
    }
    if (op->src[3]->nb[0] != sizeof(int32_t) || op->src[4]->nb[0] != sizeof(int32_t) || !ggml_is_contiguous(op->src[5]))
        return false;
    // pool rows are whole rows of the type (the kernels address slot * row bytes)
    if (k->nb[1] != ggml_row_size(k->type, k->ne[0]) || v->nb[1] != ggml_row_size(v->type, v->ne[0])) return false;
    return kvzap_attn_supported(cc / 10, type, (int32_t)k->ne[0], (int32_t)v->ne[0]);
}

void ggml_cuda_kvzap_attn(ggml_backend_cuda_context & ctx, ggml_tensor * dst) {
    const ggml_tensor *q = dst->src[0], *k = dst->src[1], *v = dst->src[2];
    const ggml_tensor *bt = dst->src[3], *no = dst->src[4], *ps = dst->src[5];
    kvzap_attn_args a = {};
    a.q               = (const float *)q->data;
    a.q_nb1           = (int64_t)q->nb[1];
    a.q_nb2           = (int64_t)q->nb[2];
    a.k               = k->data;
    a.v               = v->data;
    a.k_row           = (int64_t)k->nb[1];
    a.v_row           = (int64_t)v->nb[1];
    GGML_ASSERT(kvzap_kv_type_of(k->type, a.type));
    a.block_table = (const int32_t *)bt->data;
    a.bt_stride   = (int64_t)(bt->nb[1] / sizeof(int32_t));
    a.n_old       = (const int32_t *)no->data;
    a.pos         = (const int32_t *)ps->data;
    a.dk          = (int32_t)q->ne[0];
    a.dv          = (int32_t)v->ne[0];
    a.n_head      = (int32_t)q->ne[1];
    a.n_head_kv   = (int32_t)bt->ne[1];
    a.n_tokens    = (int32_t)q->ne[2];
    memcpy(&a.scale, dst->op_params, sizeof(float));
    a.block_size               = ((const int32_t *)dst->op_params)[1];
    a.nb_max                   = (int32_t)bt->ne[0];
    a.total_len                = 0; // the lengths live on the device: chunks are cut for the longest list
    a.dst                      = (float *)dst->data;
    a.dst_nb1                  = (int64_t)dst->nb[1];
    a.dst_nb2                  = (int64_t)dst->nb[2];
    const kvzap_attn_plan plan = kvzap_attn_make_plan(a, ggml_cuda_info().devices[ctx.device].nsm);
    ggml_cuda_pool_alloc<char> ws(ctx.pool(), std::max<size_t>(plan.workspace_bytes, 1));
    CUDA_CHECK(kvzap_attn_cuda(a, plan, ws.get(), ctx.stream()));
}
