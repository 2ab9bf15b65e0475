#!/usr/bin/env bash
# Runs on the GPU machine (device tool), in the repo root, with .gpu and dist carried: unpacks node and the runtime
# (once: a warm machine keeps them between calls), puts the addons in place, then runs CHECKS.
#   KVZAP_BUILDS="cuda stock cpu" bash scripts/gpu/remote.sh [check-script [its arguments]]      logs under $OUT
# KVZAP_BUILDS names the addons to make there (default: cuda; "none" makes none). A CUDA addon built elsewhere travels
# as .gpu-cuda/kvzap-cuda.node.xz (scripts/gpu/pack.sh, from native/build-cuda) and is used instead of building one
# from .gpu/llsrc.tar.xz; the stock engine's likewise as .gpu-stock/kvzap-stock.node.xz (from native/build-stock). The stock engine (the unpatched llama.cpp of the same tag, KVZAP_STOCK=ON) is built from
# .gpu/llsrc-stock.tar.xz. Builds take a lock per folder, so a second call waits for a build a first one started.
# KVZAP_CMAKE_EXTRA: more cmake options for the builds there (build-here.sh's CPU flags, for a stock build beside an
# addon built here).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/nodebin
exec 8>/tmp/kvzap-setup.lock && flock 8
[ -x /tmp/nodebin/node ] || { xz -dc .gpu/node.xz > /tmp/nodebin/node.tmp && chmod +x /tmp/nodebin/node.tmp && mv /tmp/nodebin/node.tmp /tmp/nodebin/node; }
export PATH=/tmp/nodebin:$PATH
[ -f node_modules/.kvzap-gpu ] || { tar -xJf .gpu/nm.tar.xz && touch node_modules/.kvzap-gpu; }
[ -f .gpu/corpora.tar.xz ] && [ ! -d .gpu/corpora ] && tar -C .gpu -xJf .gpu/corpora.tar.xz
[ -f .gpu/gguf-py.tar.xz ] && [ ! -d .gpu/gguf-py ] && tar -C .gpu -xJf .gpu/gguf-py.tar.xz
# a carried addon (ours, or the stock engine's) replaces the one a warm machine kept when it is another build
for k in cuda stock; do
  x=.gpu-$k/kvzap-$k.node.xz; b=native/build-$k
  if [ -f "$x" ] && [ "$(sha256sum < "$x")" != "$(cat "$b/.stamp" 2>/dev/null)" ]; then
    mkdir -p "$b" && xz -dc "$x" > "$b/kvzap.node.tmp" && mv "$b/kvzap.node.tmp" "$b/kvzap.node" && sha256sum < "$x" > "$b/.stamp"
  fi
done
flock -u 8
# the CUDA runtime libraries the addons link (cuBLAS may live with the toolkit or with PyTorch's wheels)
CUBLAS=$(ls /usr/local/cuda/lib64/libcublas.so.13 2>/dev/null || find / -name 'libcublas.so.13' -not -path '/proc/*' 2>/dev/null | head -1)
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib ${CUBLAS:+$(dirname "$CUBLAS")}; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader | tee "$OUT/gpu.txt"
build() { # build SRC_TAR SRC_DIR BUILD_DIR CUDA(ON|OFF) STOCK(ON|OFF) JOBS
  mkdir -p "$3" && exec 9>"$3.lock" && flock 9
  if [ -f "$3/kvzap.node" ]; then flock -u 9; return 0; fi
  local t0=$(date +%s)
  [ -d "$2" ] || { mkdir -p "$(dirname "$2")" && tar -C "$(dirname "$2")" -xJf "$1"; }
  cmake -S native -B "$3" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVZAP_LLAMA_SRC="$PWD/$2" \
    -DKVZAP_CUDA="$4" -DKVZAP_STOCK="$5" -DCMAKE_CUDA_ARCHITECTURES="${KVZAP_CUDA_ARCH:-90}" \
    -DCMAKE_JS_INC="$PWD/node_modules/node-api-headers/include" ${KVZAP_CMAKE_EXTRA:-} > "/tmp/cmake-$(basename "$3").log" 2>&1 &&
  cmake --build "$3" -j"$6" >> "/tmp/cmake-$(basename "$3").log" 2>&1
  local rc=$?
  cp "/tmp/cmake-$(basename "$3").log" "$OUT/" 2>/dev/null
  echo "build $3: rc=$rc in $(( $(date +%s) - t0 ))s" | tee -a "$OUT/summary.txt"
  flock -u 9
  return $rc
}
BUILDS=${KVZAP_BUILDS:-cuda}
case "$BUILDS" in *cpu*) build .gpu/llsrc.tar.xz native/deps/llama.cpp native/build-cpu OFF OFF 8 & ;; esac
case "$BUILDS" in *cuda*) build .gpu/llsrc.tar.xz native/deps/llama.cpp native/build-cuda ON OFF 16 ;; esac
# stock after ours, at a lower priority (each build takes every core): ours is ready for checks in half the time, and
# the checks that then run beside the stock build keep their cores
case "$BUILDS" in *stock*) (renice -n 15 -p $BASHPID > /dev/null; build .gpu/llsrc-stock.tar.xz native/deps/llama.cpp-stock native/build-stock ON ON 16) ;; esac
wait
for m in .gpu/*.gguf .gpu-tb/*.gguf; do [ -f "$m" ] && mkdir -p ../shared/models && ln -sf "$PWD/$m" ../shared/models/; done
if [ -d .gpu/corpora ]; then mkdir -p ../shared/corpora && cp -n .gpu/corpora/* ../shared/corpora/; fi
addon() { [ -f "$1/kvzap.node" ] && echo "$PWD/$1/kvzap.node"; }
export KVZAP_CPU_ADDON=$(addon native/build-cpu) KVZAP_CUDA_ADDON=$(addon native/build-cuda) KVZAP_STOCK_ADDON=$(addon native/build-stock)
echo "addons: cpu=$KVZAP_CPU_ADDON cuda=$KVZAP_CUDA_ADDON stock=$KVZAP_STOCK_ADDON" | tee -a "$OUT/summary.txt"
[ -n "${1:-}" ] && bash "$@" 2>&1 | tee "$OUT/checks.log"
exit 0
