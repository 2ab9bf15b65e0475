// Virtual memory for the KV pool: address space for the most the pool may hold is reserved once, and physical memory
// is committed in chunks from the start of the range as the pool's high-water mark rises, and released when it falls.
// Everything above the committed size is inaccessible, so a kernel that reads an uncommitted block faults loudly
// instead of reading zeros.
//
// The interface is the one the CUDA virtual memory API supports as well (cuMemAddressReserve for the range,
// cuMemCreate + cuMemMap + cuMemSetAccess per chunk, cuMemUnmap + cuMemRelease to give one back): a device backend
// implements kvzap_vmem and the block pool above it does not change.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kvzap-moves.h"

// Commit granularity in VRAM: 2 MiB is the usual CUDA VMM allocation granularity (cuMemGetAllocationGranularity);
// against a KV pool of tens of MiB or more it wastes under one chunk per region and keeps the commit calls few. The
// pool's regions start on whole chunks, in host memory too (which commits in KVZAP_VMEM_HOST_CHUNK steps).
static constexpr size_t KVZAP_VMEM_CHUNK = 2u << 20;

class kvzap_vmem {
public:
    virtual ~kvzap_vmem() = default;

    // Reserves `bytes` of address space (rounded up to the backend's page); nothing is committed. False, with err(),
    // on failure.
    virtual bool reserve(size_t bytes) = 0;
    // Commits physical memory for [0, bytes), rounded up to a chunk (or to the end of the reservation); never shrinks.
    // False when it cannot.
    virtual bool ensure_committed(size_t bytes) = 0;
    // Gives back the physical memory above `bytes` (rounded up the same way); the range stays reserved.
    virtual void decommit_above(size_t bytes) = 0;
    // Copies n bytes inside the range (both ends committed); the ranges may overlap.
    virtual void copy(size_t dst, size_t src, size_t n) = 0;
    // Start of the reserved range (host or device address, as the backend's tensors expect).
    virtual void * base() const = 0;
    // A part of this reservation, [offset, offset + bytes), committed on its own from its own start (offset and bytes
    // whole chunks), so that one range holds several regions that each grow and shrink; the part gives its memory
    // back when destroyed, and must be destroyed before the whole. Null, with err(), if it does not fit.
    virtual std::unique_ptr<kvzap_vmem> part(size_t offset, size_t bytes) = 0;

    size_t reserved_bytes() const { return reserved; }
    size_t committed_bytes() const { return committed; }
    const std::string & err() const { return error; }

protected:
    size_t reserved  = 0;
    size_t committed = 0;
    std::string error;
};

// Host memory: an anonymous private mapping reserved PROT_NONE; committing makes chunks readable and writable (pages
// materialize, zeroed by the OS, when first touched), decommitting returns them with MADV_DONTNEED.
std::unique_ptr<kvzap_vmem> kvzap_vmem_cpu();

// Device memory of CUDA device `device` (kvzap-vmem-cuda.cu): the same contract through the CUDA virtual memory API.
// CPU builds (kvzap-cuda-none.cpp) return null, with the reason in err.
std::unique_ptr<kvzap_vmem> kvzap_vmem_cuda(int device, std::string & err);

// Applies a set of independent row moves (kvzap_move_log::resolve) to a K and a V range of CUDA device `device` at
// once: slot set[i].dst takes the rows slot set[i].src held before any of them; `overlap` (some source is another's
// destination): through scratch (kvzap_moves_cuda), else straight (kvzap_moves_direct_cuda). Rows are k_row and v_row
// bytes. Waits until they are done. False, with err, on failure (and always in CPU builds).
bool kvzap_vmem_cuda_moves(int device, kvzap_vmem & k, kvzap_vmem & v, size_t k_row, size_t v_row,
                           const kvzap_row_move * set, size_t n, bool overlap, std::string & err);

// Writes table[pairs[2i]] = pairs[2i + 1] for i < n into an I32 table in the memory of CUDA device `device` (one
// upload and one kernel, after the work queued there is done), and waits until it is done. False, with err, on
// failure (and always in CPU builds).
bool kvzap_vmem_cuda_scatter_i32(int device, void * table, const int32_t * pairs, size_t n, std::string & err);

// Waits for everything queued on CUDA device `device` (ggml's streams do not order host reads after the graph).
void kvzap_vmem_cuda_sync(int device);

// A host range to copy into device memory (kvzap_vmem_cuda_write).
struct kvzap_host_write {
    void * dst;
    const void * src;
    size_t bytes;
};

// Copies n host ranges into the memory of CUDA device `device` once the work queued there is done, through one pinned
// buffer, with one wait for them all (where one ggml_backend_tensor_set each would wait on its own). False, with err,
// on failure (and always in CPU builds).
bool kvzap_vmem_cuda_write(int device, const kvzap_host_write * w, size_t n, std::string & err);

// Copies `bytes` of the memory of CUDA device `device` at src to host memory at dst on a stream of its own, which
// waits for nothing else queued on the device: for memory that work already finished wrote, read while a graph that
// does not touch it runs. Waits until the copy is done. False, with err, on failure (and always in CPU builds).
bool kvzap_vmem_cuda_read_beside(int device, void * dst, const void * src, size_t bytes, std::string & err);

// Free and total memory of CUDA device `device` as the driver reports them; false in CPU builds.
bool kvzap_vmem_cuda_mem_info(int device, size_t & free, size_t & total);

// Host memory commits in smaller steps: the pool has a region per layer, and host pages are small; a whole chunk per
// region would hold a small model's pool several times over.
static constexpr size_t KVZAP_VMEM_HOST_CHUNK = 64u << 10;
