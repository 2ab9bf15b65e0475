#!/usr/bin/env bash
# Builds the CUDA addons for the GPU machine on this one, which has nvcc but neither cuBLAS nor a driver: ours
# (native/build-cuda) and, with --stock, the stock engine's (native/build-stock, from native/deps/llama.cpp-stock,
# which npm run build:stock prepares). cuBLAS comes from pip's nvidia-cublas wheel (headers and the library to link;
# the GPU machine has its own), libcuda from a stub made from cuda.h's declarations (soname libcuda.so.1: the driver
# there answers). sm_90 (KVZAP_CUDA_ARCH), no -march=native (the GPU machine's CPU is another). pack.sh then puts
# them in .gpu-cuda and .gpu-stock, which remote.sh unpacks there instead of building.
#   bash scripts/gpu/build-here.sh [--stock]      (about 40 minutes an addon on 2 cores)
#   bash scripts/gpu/build-here.sh --flags        the CPU flags alone (for a stock build there: call-carried.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
CPU_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
if [ "${1:-}" = --flags ]; then echo "$CPU_FLAGS"; exit 0; fi
T=${KVZAP_HERE_TMP:-/tmp/kvzap-here}
mkdir -p "$T"
CB=$T/cublas/nvidia/cu13
if [ ! -f "$CB/lib/libcublas.so.13" ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_27_x86_64 -d "$T/whl" nvidia-cublas
  (cd "$T" && mkdir -p cublas && cd cublas && unzip -q -o "$T"/whl/nvidia_cublas-*.whl)
fi
CUDA_INC=$(nvcc --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | grep -o 'TOP=[^ ]*' | head -1 | cut -d= -f2)/include
if [ ! -f "$T/stub/libcuda.so" ]; then
  mkdir -p "$T/stub"
  echo '#include <cuda.h>' | gcc -E -I"$CUDA_INC" - | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' |
    sed 's/[[:space:](]//g' | sort -u | sed 's/.*/int &(void) { return 999; }/' > "$T/stub/stub.c"
  gcc -shared -fPIC -o "$T/stub/libcuda.so" -Wl,-soname,libcuda.so.1 "$T/stub/stub.c"
fi
build() { # build SRC BUILD_DIR STOCK(ON|OFF)
  cmake -S native -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVZAP_LLAMA_SRC="$PWD/$1" -DKVZAP_CUDA=ON -DKVZAP_STOCK="$3" \
    -DCMAKE_CUDA_ARCHITECTURES="${KVZAP_CUDA_ARCH:-90}" -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include" \
    $CPU_FLAGS \
    -DCUDA_cublas_LIBRARY="$CB/lib/libcublas.so.13" -DCUDA_cublasLt_LIBRARY="$CB/lib/libcublasLt.so.13" \
    -DCUDA_cuda_driver_LIBRARY="$T/stub/libcuda.so" "-DCMAKE_CUDA_FLAGS=-I$CB/include" "-DCMAKE_CXX_FLAGS=-I$CB/include" > "$T/cmake-$(basename "$2").log"
  ninja -C "$2" kvzap.node
}
build native/deps/llama.cpp native/build-cuda OFF
if [ "${1:-}" = "--stock" ]; then build native/deps/llama.cpp-stock native/build-stock ON; fi
