// The CUDA virtual-memory backend of the KV pool (native/kvzap/kvzap-vmem-cuda.cu) on a GPU: what the driver reports
// as used follows the committed size, not the reservation; committed memory reads back zeros, holds what is written,
// and moves like memmove (overlapping both ways); decommitting gives the memory back; asking for more than the GPU
// has fails with a message and leaves the pool usable.
//   nvcc -O2 -std=c++17 -Inative/kvzap -Icuda native/kvzap/kvzap-vmem-cuda.cu cuda/kvzap-attn.cu scripts/gpu/kvzap-vmem-check.cpp -lcuda -o /tmp/kvzap-vmem-check
#include "kvzap-vmem.h"

#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

static int failed = 0;

static void check(bool ok, const char * what, double a = 0, double b = 0) {
    failed += !ok;
    std::printf("%s %s (%.1f, %.1f)\n", ok ? "PASS" : "FAIL", what, a, b);
}

static double used_mib() {
    size_t free_b = 0, total = 0;
    cudaMemGetInfo(&free_b, &total);
    return (double) (total - free_b) / (1 << 20);
}

int main() {
    cudaFree(0);
    const double u0 = used_mib();
    std::string err;
    auto vm = kvzap_vmem_cuda(0, err);
    if (!vm) {
        std::printf("FAIL no CUDA virtual memory: %s\n", err.c_str());
        return 1;
    }
    const size_t reserve = (size_t) 256 << 30;  // more than the GPU holds: address space only
    check(vm->reserve(reserve), "reserve 256 GiB of address space", (double) (vm->reserved_bytes() >> 30), 0);
    check(used_mib() - u0 < 64, "a reservation costs no device memory: MiB used before, after", u0, used_mib());

    const size_t n = (size_t) 300 << 20;
    check(vm->ensure_committed(n), "commit 300 MiB");
    const double u1 = used_mib();
    check(u1 - u0 >= 298 && u1 - u0 <= 300 + 64, "the driver counts what is committed: MiB more used, committed MiB", u1 - u0,
          (double) (vm->committed_bytes() >> 20));

    std::vector<unsigned char> h(n), want(n);
    cudaMemcpy(h.data(), vm->base(), n, cudaMemcpyDeviceToHost);
    bool zeros = true;
    for (unsigned char c : h) zeros = zeros && c == 0;
    check(zeros, "fresh memory reads back zeros");

    std::mt19937 rng(3);
    for (auto & c : want) c = (unsigned char) rng();
    cudaMemcpy(vm->base(), want.data(), n, cudaMemcpyHostToDevice);
    // overlapping moves both ways, and a disjoint one, against memmove on the host
    const size_t moves[][3] = {{1000, 5000, 100000}, {7000, 1000, 150000}, {200 << 20, 10 << 20, 64 << 20}, {123, 124, 1 << 20}};
    for (const auto & m : moves) {
        vm->copy(m[0], m[1], m[2]);
        std::memmove(want.data() + m[0], want.data() + m[1], m[2]);
    }
    cudaMemcpy(h.data(), vm->base(), n, cudaMemcpyDeviceToHost);
    check(h == want, "copies inside the range match memmove");

    vm->decommit_above((size_t) 20 << 20);
    const double u2 = used_mib();
    check(u2 - u0 <= 20 + 64 && vm->committed_bytes() == ((size_t) 20 << 20), "decommit above 20 MiB gives the rest back: MiB used", u2 - u0,
          (double) (vm->committed_bytes() >> 20));
    cudaMemcpy(h.data(), vm->base(), (size_t) 20 << 20, cudaMemcpyDeviceToHost);
    check(std::memcmp(h.data(), want.data(), (size_t) 20 << 20) == 0, "what stays committed keeps its contents");

    // more than the device has: fails cleanly, keeps what it had committed usable
    size_t free_b = 0, total = 0;
    cudaMemGetInfo(&free_b, &total);
    const auto t0 = std::chrono::steady_clock::now();
    const bool too_much = vm->ensure_committed(total + ((size_t) 4 << 30));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    check(!too_much && !vm->err().empty(), "committing more than the GPU has fails (seconds taken, GiB committed when it stopped)", secs,
          (double) vm->committed_bytes() / (1 << 30));
    std::printf("  its message: %s\n", vm->err().c_str());
    vm->decommit_above((size_t) 20 << 20);
    check(vm->ensure_committed((size_t) 64 << 20), "and the pool commits again afterwards");
    vm.reset();
    check(used_mib() - u0 < 64, "destroying the pool returns everything: MiB used", used_mib() - u0, 0);
    std::printf("%s: %d failed\n", failed ? "FAIL" : "PASS", failed);
    return failed ? 1 : 0;
}
