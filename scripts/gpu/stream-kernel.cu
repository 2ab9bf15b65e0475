// A stand-in for the weight matmuls around the attention kernel in a decode step (kvzap-attn-check.cpp's
// KVZAP_INTERLEAVE timing): one pass over a buffer, one sum per CTA, no shared memory beyond a warp's. With carveout
// >= 0 the kernel asks for that shared-memory carveout (percent), else it keeps the driver's default choice.
#include <cuda_runtime.h>

namespace {
template <int V> __global__ void stream_read_kernel(const float4 * buf, size_t n, float * out) {
    float s = 0.0f;
    for (size_t i = (size_t) blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t) gridDim.x * blockDim.x) {
        const float4 x = buf[i];
        s += x.x + x.y + x.z + x.w;
    }
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffff, s, o);
    if (threadIdx.x % 32 == 0) atomicAdd(out + blockIdx.x % 64, s);
}
}  // namespace

cudaError_t stream_read(const void * buf, size_t bytes, float * out, int carveout, int n_sm, cudaStream_t stream) {
    static bool set = false;
    if (carveout >= 0 && !set) {
        cudaError_t e = cudaFuncSetAttribute(stream_read_kernel<1>, cudaFuncAttributePreferredSharedMemoryCarveout, carveout);
        if (e != cudaSuccess) return e;
        set = true;
    }
    if (carveout >= 0) {
        stream_read_kernel<1><<<n_sm * 4, 256, 0, stream>>>((const float4 *) buf, bytes / 16, out);
    } else {
        stream_read_kernel<0><<<n_sm * 4, 256, 0, stream>>>((const float4 *) buf, bytes / 16, out);
    }
    return cudaGetLastError();
}
