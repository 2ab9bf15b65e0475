// CPU builds: no CUDA device, so calibration computes on the CPU.
#include "kvzap-compute.h"
#include "kvzap-vmem.h"

int kvzap_cuda_device_count() {
    return 0;
}

bool kvzap_cuda_oracle_layer(const kvzap_oracle_layer &, float *, std::string & err) {
    err = "this build has no CUDA backend";
    return false;
}

bool kvzap_cuda_train_mlp(const kvzap_mlp_train &, std::string & err) {
    err = "this build has no CUDA backend";
    return false;
}

std::unique_ptr<kvzap_vmem> kvzap_vmem_cuda(int, std::string & err) {
    err = "this build has no CUDA backend";
    return nullptr;
}

bool kvzap_vmem_cuda_moves(int, kvzap_vmem &, kvzap_vmem &, size_t, size_t, const kvzap_row_move *, size_t, bool,
                           std::string & err) {
    err = "this build has no CUDA backend";
    return false;
}

bool kvzap_vmem_cuda_scatter_i32(int, void *, const int32_t *, size_t, std::string & err) {
    err = "this build has no CUDA backend";
    return false;
}

bool kvzap_vmem_cuda_mem_info(int, size_t &, size_t &) {
    return false;
}

void kvzap_vmem_cuda_sync(int) {}

bool kvzap_vmem_cuda_write(int, const kvzap_host_write *, size_t, std::string & err) {
    err = "this build has no CUDA backend";
    return false;
}

bool kvzap_vmem_cuda_read_beside(int, void *, const void *, size_t, std::string & err) {
    err = "this build has no CUDA backend";
    return false;
}
