// CPU builds: no CUDA device, so calibration computes on the CPU.
#include "kvzap-compute.h"

int kvzap_cuda_device_count() { return 0; }

bool kvzap_cuda_oracle_layer(const kvzap_oracle_layer &, float *, std::string & err) {
    err = "this build has no CUDA backend";
    return false;
}

bool kvzap_cuda_train_mlp(const kvzap_mlp_train &, std::string & err) {
    err = "this build has no CUDA backend";
    return false;
}
