#!/usr/bin/env bash
# Runs on the GPU machine (device tool), in the repo root, with .gpu and dist carried:
# unpacks node and the runtime, builds the addon for CUDA (and for the CPU, to compare), then runs CHECKS.
#   bash scripts/gpu/remote.sh [check-script]      logs under $OUT
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/nodebin
xz -dc .gpu/node.xz > /tmp/nodebin/node && chmod +x /tmp/nodebin/node
export PATH=/tmp/nodebin:$PATH
tar -xJf .gpu/nm.tar.xz
mkdir -p native/deps && tar -C native/deps -xJf .gpu/llsrc.tar.xz
[ -f .gpu/corpora.tar.xz ] && tar -C .gpu -xJf .gpu/corpora.tar.xz
[ -f .gpu/gguf-py.tar.xz ] && tar -C .gpu -xJf .gpu/gguf-py.tar.xz
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader | tee "$OUT/gpu.txt"
build() { # build DIR CUDA(ON|OFF)
  local t0=$(date +%s)
  cmake -S native -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVZAP_LLAMA_SRC="$PWD/native/deps/llama.cpp" \
    -DKVZAP_CUDA="$2" -DCMAKE_CUDA_ARCHITECTURES="${KVZAP_CUDA_ARCH:-90}" \
    -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include" > "$OUT/cmake-$2.log" 2>&1 &&
  cmake --build "$1" -j16 >> "$OUT/cmake-$2.log" 2>&1
  local rc=$?
  echo "build $2: rc=$rc in $(( $(date +%s) - t0 ))s" | tee -a "$OUT/summary.txt"
  return $rc
}
# KVZAP_BUILDS="cuda" skips the CPU build (it is only there to compare outputs)
case "${KVZAP_BUILDS:-cpu cuda}" in *cpu*) build native/build-cpu OFF & ;; esac
build native/build-cuda ON
wait
if [ -d .gpu/corpora ]; then mkdir -p ../shared/corpora ../shared/models && cp .gpu/corpora/* ../shared/corpora/ && cp .gpu/*.gguf ../shared/models/; fi
export KVZAP_CPU_ADDON=$( [ -d native/build-cpu ] && echo "$PWD/$(find native/build-cpu -name kvzap.node | head -1)" )
export KVZAP_CUDA_ADDON=$PWD/$(find native/build-cuda -name kvzap.node | head -1)
echo "addons: cpu=$KVZAP_CPU_ADDON cuda=$KVZAP_CUDA_ADDON" | tee -a "$OUT/summary.txt"
[ -n "${1:-}" ] && bash "$1" 2>&1 | tee "$OUT/checks.log"
exit 0
