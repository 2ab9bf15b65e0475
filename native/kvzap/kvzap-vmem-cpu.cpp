#include "kvzap-vmem.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#if defined(_WIN32)
#    define WIN32_LEAN_AND_MEAN
#    include <windows.h>
#else
#    include <sys/mman.h>
#    include <unistd.h>
#endif

namespace {

class kvzap_vmem_host : public kvzap_vmem {
public:
    kvzap_vmem_host() = default;

    kvzap_vmem_host(char * at, size_t bytes) : ptr(at), owns(false) { reserved = bytes; }

    ~kvzap_vmem_host() override {
        if (!ptr) return;
        if (!owns) {
            decommit_above(0);
            return;
        }
#if defined(_WIN32)
        VirtualFree(ptr, 0, MEM_RELEASE);
#else
        munmap(ptr, reserved);
#endif
    }

    std::unique_ptr<kvzap_vmem> part(size_t offset, size_t bytes) override {
        if (offset + bytes > reserved) {
            error = "a part of the pool's range lies outside it";
            return nullptr;
        }
        return std::make_unique<kvzap_vmem_host>(ptr + offset, bytes);
    }

    bool reserve(size_t bytes) override {
        // whole pages: the last chunk may be partial, so that a small budget is not rounded up to a chunk
        const size_t page = page_size();
        const size_t n    = ((bytes > 0 ? bytes : 1) + page - 1) / page * page;
#if defined(_WIN32)
        ptr = (char *)VirtualAlloc(nullptr, n, MEM_RESERVE, PAGE_NOACCESS);
        if (!ptr) {
            error = "VirtualAlloc could not reserve " + std::to_string(n) + " bytes";
            return false;
        }
#else
        void * p = mmap(nullptr, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            error = std::string("mmap could not reserve ") + std::to_string(n) + " bytes: " + strerror(errno);
            return false;
        }
        ptr = (char *)p;
#endif
        reserved = n;
        return true;
    }

    bool ensure_committed(size_t bytes) override {
        if (bytes > reserved) {
            error = "the pool needs " + std::to_string(bytes) + " bytes but reserved " + std::to_string(reserved);
            return false;
        }
        const size_t want = std::min(round_up(bytes), reserved);
        if (want <= committed) return true;
#if defined(_WIN32)
        if (!VirtualAlloc(ptr + committed, want - committed, MEM_COMMIT, PAGE_READWRITE)) {
            error = "VirtualAlloc could not commit the KV pool";
            return false;
        }
#else
        if (mprotect(ptr + committed, want - committed, PROT_READ | PROT_WRITE) != 0) {
            error = std::string("mprotect could not commit the KV pool: ") + strerror(errno);
            return false;
        }
#endif
        committed = want;
        return true;
    }

    void decommit_above(size_t bytes) override {
        const size_t keep = std::min(round_up(bytes), reserved);
        if (keep >= committed) return;
#if defined(_WIN32)
        VirtualFree(ptr + keep, committed - keep, MEM_DECOMMIT);
#else
        // MADV_DONTNEED drops the pages of a private anonymous mapping at once (RSS falls now, not under pressure);
        // PROT_NONE makes a later read of the range fault instead of seeing fresh zero pages.
        madvise(ptr + keep, committed - keep, MADV_DONTNEED);
        mprotect(ptr + keep, committed - keep, PROT_NONE);
#endif
        committed = keep;
    }

    void copy(size_t dst, size_t src, size_t n) override {
        memmove(ptr + dst, ptr + src, n);
    }

    void * base() const override {
        return ptr;
    }

private:
    static size_t round_up(size_t bytes) {
        return (bytes + KVZAP_VMEM_HOST_CHUNK - 1) / KVZAP_VMEM_HOST_CHUNK * KVZAP_VMEM_HOST_CHUNK;
    }

    static size_t page_size() {
#if defined(_WIN32)
        SYSTEM_INFO si;
        GetSystemInfo(&si);
        return si.dwAllocationGranularity;
#else
        const long p = sysconf(_SC_PAGESIZE);
        return p > 0 ? (size_t)p : 4096;
#endif
    }

    char * ptr = nullptr;
    bool owns  = true;
};

} // namespace

std::unique_ptr<kvzap_vmem> kvzap_vmem_cpu() {
    return std::make_unique<kvzap_vmem_host>();
}
