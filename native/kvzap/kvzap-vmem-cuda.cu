// Device memory for the KV pool, behind kvzap-vmem.h's interface: the CUDA virtual memory API, as ggml-cuda's own VMM
// pool uses it. reserve() takes address space only (cuMemAddressReserve); ensure_committed() backs it from the start
// in chunks (cuMemCreate + cuMemMap + cuMemSetAccess, each chunk zeroed); decommit_above() unmaps the chunks above a
// size, which gives their memory back to the driver (the allocation handles are released once mapped, so the mapping
// is the last reference). What the driver reports as used (cudaMemGetInfo, nvidia-smi) follows the committed size.
// Every call waits for the device first where it touches memory kernels may be using: the pool changes between
// graph computations, on the host, a few times per ubatch at most.
#include "kvzap-vmem.h"
#include "kvzap-attn.cuh"

#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <vector>
#include <string>

namespace {

std::string cu_error(const char * what, CUresult r) {
    const char * s = nullptr;
    cuGetErrorString(r, &s);
    return std::string(what) + ": " + (s ? s : "unknown CUDA driver error");
}

class kvzap_vmem_device : public kvzap_vmem {
public:
    explicit kvzap_vmem_device(int device) : device(device) {}

    kvzap_vmem_device(const kvzap_vmem_device & whole, size_t offset, size_t bytes) :
        device(whole.device), prop(whole.prop), chunk(whole.chunk), ptr(whole.ptr + offset), owns(false) {
        reserved = bytes;
    }

    ~kvzap_vmem_device() override {
        if (!ptr) return;
        cudaSetDevice(device);
        cudaDeviceSynchronize();
        unmap(0, committed);
        if (owns) cuMemAddressFree(ptr, reserved);
    }

    std::unique_ptr<kvzap_vmem> part(size_t offset, size_t bytes) override {
        if (offset % chunk != 0 || bytes % chunk != 0 || offset + bytes > reserved) {
            error = "a part of the pool's range is not whole chunks inside it";
            return nullptr;
        }
        return std::make_unique<kvzap_vmem_device>(*this, offset, bytes);
    }

    bool reserve(size_t bytes) override {
        cudaError_t e = cudaSetDevice(device); // also makes the device's primary context current for the driver calls
        if (e != cudaSuccess) {
            error = std::string("cannot use CUDA device ") + std::to_string(device) + ": " + cudaGetErrorString(e);
            return false;
        }
        CUdevice dev;
        CUresult r = cuDeviceGet(&dev, device);
        if (r != CUDA_SUCCESS) return fail("cuDeviceGet", r);
        prop               = {};
        prop.type          = CU_MEM_ALLOCATION_TYPE_PINNED;
        prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
        prop.location.id   = dev;
        size_t gran        = 0;
        r                  = cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
        if (r != CUDA_SUCCESS) return fail("cuMemGetAllocationGranularity", r);
        chunk = (KVZAP_VMEM_CHUNK + gran - 1) / gran * gran; // the common chunk, unless the driver's is coarser
        const size_t n = round(bytes > 0 ? bytes : 1);
        r              = cuMemAddressReserve(&ptr, n, 0, 0, 0);
        if (r != CUDA_SUCCESS) {
            ptr = 0;
            return fail("cuMemAddressReserve", r);
        }
        reserved = n;
        return true;
    }

    bool ensure_committed(size_t bytes) override {
        const size_t want = round(bytes);
        if (want <= committed) return true;
        if (want > reserved) {
            error = "the pool needs " + std::to_string(want) + " bytes but reserved " + std::to_string(reserved);
            return false;
        }
        cudaSetDevice(device);
        CUmemAccessDesc access = {};
        access.location        = prop.location;
        access.flags           = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
        const size_t from      = committed;
        while (committed < want) {
            CUmemGenericAllocationHandle h;
            CUresult r = cuMemCreate(&h, chunk, &prop, 0);
            if (r != CUDA_SUCCESS) { // no device memory left: what was mapped so far stays committed
                error = "the GPU has no memory left for the KV pool (" + std::to_string(committed >> 20) +
                        " MiB committed, " + std::to_string(want >> 20) + " MiB needed): " + cu_error("cuMemCreate", r);
                zero(from, committed);
                return false;
            }
            const CUdeviceptr at = ptr + committed;
            r                    = cuMemMap(at, chunk, 0, h, 0);
            cuMemRelease(h); // the mapping holds the memory from here on
            if (r != CUDA_SUCCESS) return fail("cuMemMap", r);
            r = cuMemSetAccess(at, chunk, &access, 1);
            if (r != CUDA_SUCCESS) {
                cuMemUnmap(at, chunk);
                return fail("cuMemSetAccess", r);
            }
            committed += chunk;
        }
        return zero(from, committed);
    }

    void decommit_above(size_t bytes) override {
        const size_t keep = round(bytes);
        if (keep >= committed) return;
        cudaSetDevice(device);
        cudaDeviceSynchronize(); // no kernel may still read what goes
        unmap(keep, committed);
        committed = keep;
    }

    void copy(size_t dst, size_t src, size_t n) override {
        if (n == 0 || dst == src) return;
        cudaSetDevice(device);
        cudaDeviceSynchronize();
        // overlapping ranges go in pieces no longer than their distance, in the direction that reads before it writes
        const size_t step = dst > src ? dst - src : src - dst;
        if (step >= n) {
            cudaMemcpy((void *)(ptr + dst), (const void *)(ptr + src), n, cudaMemcpyDeviceToDevice);
        } else if (dst < src) {
            for (size_t i = 0; i < n; i += step) {
                cudaMemcpy((void *)(ptr + dst + i), (const void *)(ptr + src + i), std::min(step, n - i),
                           cudaMemcpyDeviceToDevice);
            }
        } else {
            for (size_t end = n; end > 0;) {
                const size_t len = std::min(step, end);
                end -= len;
                cudaMemcpy((void *)(ptr + dst + end), (const void *)(ptr + src + end), len, cudaMemcpyDeviceToDevice);
            }
        }
        cudaDeviceSynchronize(); // ggml's streams do not wait for the legacy stream
    }

    void * base() const override { return (void *)ptr; }

private:
    size_t round(size_t bytes) const { return (bytes + chunk - 1) / chunk * chunk; }

    bool fail(const char * what, CUresult r) {
        error = cu_error(what, r);
        return false;
    }

    bool zero(size_t from, size_t to) { // fresh chunks hold whatever the driver left: zeroed, as host pages are
        if (to <= from) return true;
        CUresult r = cuMemsetD8(ptr + from, 0, to - from);
        if (r == CUDA_SUCCESS) r = cuCtxSynchronize();
        return r == CUDA_SUCCESS || fail("cuMemsetD8", r);
    }

    void unmap(size_t from, size_t to) {
        for (size_t off = from; off < to; off += chunk) cuMemUnmap(ptr + off, chunk);
    }

    int device;
    CUmemAllocationProp prop = {};
    size_t chunk             = KVZAP_VMEM_CHUNK;
    CUdeviceptr ptr          = 0;
    bool owns                = true;
};

} // namespace

std::unique_ptr<kvzap_vmem> kvzap_vmem_cuda(int device, std::string & err) {
    int n         = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || device < 0 || device >= n) {
        err = "no CUDA device " + std::to_string(device) +
              (e != cudaSuccess ? std::string(": ") + cudaGetErrorString(e) : std::string());
        return nullptr;
    }
    return std::make_unique<kvzap_vmem_device>(device);
}

// One upload buffer per device, grown as needed and kept (a decode step moves a few hundred rows, syncs a few ids):
// no allocation per step; and one pinned host buffer that uploads go through (an asynchronous copy, ordered before
// the kernel that reads it, where a pageable one would wait on its own). Callers hold scratch_mutex.
static std::mutex scratch_mutex;
static cudaError_t kvzap_scratch(int device, size_t bytes, void ** out) {
    static std::vector<std::pair<void *, size_t>> scratch;
    if (scratch.size() <= (size_t)device) scratch.resize((size_t)device + 1, { nullptr, 0 });
    auto & buf = scratch[(size_t)device];
    if (buf.second < bytes) {
        if (buf.first) cudaFree(buf.first);
        buf           = { nullptr, 0 };
        cudaError_t e = cudaMalloc(&buf.first, bytes * 2);
        if (e != cudaSuccess) return e;
        buf.second = bytes * 2;
    }
    *out = buf.first;
    return cudaSuccess;
}

// A pinned host buffer, grown as needed (to twice what was asked, so that it is rarely regrown) and kept; its user
// holds the mutex that guards it.
struct pinned_buffer {
    void * ptr      = nullptr;
    size_t capacity = 0;
    cudaError_t reserve(size_t bytes) {
        if (capacity >= bytes) return cudaSuccess;
        if (ptr) cudaFreeHost(ptr);
        ptr           = nullptr;
        capacity      = 0;
        cudaError_t e = cudaMallocHost(&ptr, bytes * 2);
        if (e == cudaSuccess) capacity = bytes * 2;
        return e;
    }
};

// Copies `bytes` from host memory to dst through the pinned staging buffer, on the legacy stream (not waited for:
// a kernel launched after it on that stream sees the data; the caller synchronises before the buffer is reused).
static cudaError_t kvzap_upload(void * dst, const void * src, size_t bytes) {
    static pinned_buffer pinned;
    if (cudaError_t e = pinned.reserve(bytes); e != cudaSuccess) return e;
    memcpy(pinned.ptr, src, bytes);
    return cudaMemcpyAsync(dst, pinned.ptr, bytes, cudaMemcpyHostToDevice, 0);
}

bool kvzap_vmem_cuda_moves(int device, kvzap_vmem & k, kvzap_vmem & v, size_t k_row, size_t v_row,
                           const kvzap_row_move * set, size_t n, bool overlap, std::string & err) {
    if (n == 0) return true;
    std::lock_guard<std::mutex> lock(scratch_mutex);
    cudaSetDevice(device);
    cudaError_t e              = cudaDeviceSynchronize(); // the graph that last read or wrote the rows is done
    const size_t list_bytes    = n * sizeof(kvzap_row_move);
    const size_t scratch_bytes = overlap ? n * (k_row + v_row) : 0;
    void * buf                 = nullptr;
    if (e == cudaSuccess) e = kvzap_scratch(device, list_bytes + scratch_bytes, &buf);
    if (e == cudaSuccess) e = kvzap_upload(buf, set, list_bytes);
    if (e == cudaSuccess) {
        // where no destination is another move's source, the rows go straight to their places (one kernel, no
        // scratch); otherwise they are gathered first
        e = overlap ? kvzap_moves_cuda(k.base(), v.base(), (int64_t)k_row, (int64_t)v_row, (const kvzap_row_move *)buf,
                                       (int64_t)n, (char *)buf + list_bytes, 0)
                    : kvzap_moves_direct_cuda(k.base(), v.base(), (int64_t)k_row, (int64_t)v_row,
                                              (const kvzap_row_move *)buf, (int64_t)n, 0);
    }
    if (e == cudaSuccess) e = cudaDeviceSynchronize(); // ggml's streams do not wait for the legacy stream
    if (e != cudaSuccess) {
        err = std::string("moving KV rows on the GPU failed: ") + cudaGetErrorString(e);
        return false;
    }
    return true;
}

static __global__ void kvzap_scatter_i32_kernel(int32_t * table, const int32_t * pairs, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) table[pairs[2 * i]] = pairs[2 * i + 1];
}

bool kvzap_vmem_cuda_scatter_i32(int device, void * table, const int32_t * pairs, size_t n, std::string & err) {
    if (n == 0) return true;
    std::lock_guard<std::mutex> lock(scratch_mutex);
    const size_t bytes = n * 2 * sizeof(int32_t);
    void * buf         = nullptr;
    cudaError_t e      = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaDeviceSynchronize(); // the graph that last read the table is done
    if (e == cudaSuccess) e = kvzap_scratch(device, bytes, &buf);
    if (e == cudaSuccess) e = kvzap_upload(buf, pairs, bytes);
    if (e == cudaSuccess) {
        kvzap_scatter_i32_kernel<<<(unsigned)((n + 255) / 256), 256>>>((int32_t *)table, (const int32_t *)buf,
                                                                       (int64_t)n);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaDeviceSynchronize(); // ggml's streams do not wait for the legacy stream
    if (e != cudaSuccess) {
        err = std::string("updating the KV block table on the GPU failed: ") + cudaGetErrorString(e);
        return false;
    }
    return true;
}

void kvzap_vmem_cuda_sync(int device) {
    if (cudaSetDevice(device) == cudaSuccess) cudaDeviceSynchronize();
}

bool kvzap_vmem_cuda_write(int device, const kvzap_host_write * w, size_t n, std::string & err) {
    static std::mutex write_mutex;
    static pinned_buffer pinned;
    std::lock_guard<std::mutex> lock(write_mutex);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += (w[i].bytes + 15) / 16 * 16;
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaDeviceSynchronize(); // the graph that last read the ranges is done
    if (e == cudaSuccess) e = pinned.reserve(total);
    for (size_t i = 0, off = 0; i < n && e == cudaSuccess; off += (w[i].bytes + 15) / 16 * 16, i++) {
        if (w[i].bytes == 0) continue;
        memcpy((char *)pinned.ptr + off, w[i].src, w[i].bytes);
        e = cudaMemcpyAsync(w[i].dst, (const char *)pinned.ptr + off, w[i].bytes, cudaMemcpyHostToDevice, 0);
    }
    if (e == cudaSuccess) e = cudaStreamSynchronize(0); // ggml's streams do not wait for the legacy stream
    if (e != cudaSuccess) {
        err = std::string("copying a ubatch's inputs to the GPU failed: ") + cudaGetErrorString(e);
        return false;
    }
    return true;
}

// A non-blocking stream per device (it never waits for ggml's streams, nor they for it) and a pinned buffer of its
// own, which the copy lands in before it goes to dst (a pageable destination would stage it through the driver).
bool kvzap_vmem_cuda_read_beside(int device, void * dst, const void * src, size_t bytes, std::string & err) {
    if (bytes == 0) return true;
    static std::mutex read_mutex;
    static std::vector<cudaStream_t> streams;
    static pinned_buffer pinned;
    std::lock_guard<std::mutex> lock(read_mutex);
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess && streams.size() <= (size_t)device) streams.resize((size_t)device + 1, nullptr);
    if (e == cudaSuccess && !streams[(size_t)device]) {
        e = cudaStreamCreateWithFlags(&streams[(size_t)device], cudaStreamNonBlocking);
    }
    if (e == cudaSuccess) e = pinned.reserve(bytes);
    if (e == cudaSuccess) e = cudaMemcpyAsync(pinned.ptr, src, bytes, cudaMemcpyDeviceToHost, streams[(size_t)device]);
    if (e == cudaSuccess) e = cudaStreamSynchronize(streams[(size_t)device]);
    if (e != cudaSuccess) {
        err = std::string("reading device memory beside the running graph failed: ") + cudaGetErrorString(e);
        return false;
    }
    memcpy(dst, pinned.ptr, bytes);
    return true;
}

bool kvzap_vmem_cuda_mem_info(int device, size_t & free, size_t & total) {
    if (cudaSetDevice(device) != cudaSuccess) return false;
    return cudaMemGetInfo(&free, &total) == cudaSuccess;
}
