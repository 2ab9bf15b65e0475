#!/usr/bin/env bash
# On the GPU machine (device tool), in the repo root: builds the standalone check of the KVzap attention kernels,
# runs it (checks against the CPU twin, then decode timings), times torch's SDPA on the same shapes, and runs the
# checks again under compute-sanitizer memcheck. Logs under $OUT. Needs only nvcc and python3 with torch.
#   bash scripts/gpu/check-attn.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,clocks.sm,clocks.mem --format=csv,noheader | tee "$OUT/gpu.txt"
ARCH=${KVZAP_CUDA_ARCH:-90}
nvcc -O3 -std=c++17 -arch=sm_$ARCH -lineinfo -Icuda -Inative/kvzap cuda/kvzap-attn.cu native/kvzap/kvzap-moves.cpp scripts/gpu/kvzap-attn-check.cpp scripts/gpu/stream-kernel.cu -o /tmp/kvzap-attn-check \
  > "$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; exit 1; }
export KVZAP_TIMINGS=$OUT/timings.jsonl
if [ -n "${KVZAP_QUICK:-}" ]; then  # timings only, tuning runs
  /tmp/kvzap-attn-check --time 2>&1 | tee "$OUT/check.log"; exit 0
fi
/tmp/kvzap-attn-check 2>&1 | tee "$OUT/check.log"
echo "check rc=${PIPESTATUS[0]}"
# the CTA-wide decode kernel forced for both KV types (the default is the warp-wise one): its checks and timings, an
# A/B in the same run
for k in 1:cta:f16,q8_0; do
  n=${k#*:}; n=${n%%:*}
  KVZAP_DECODE_KERNEL=${k%%:*} KVZAP_TIME_TYPES=${k##*:} KVZAP_TIMINGS=$OUT/timings-$n.jsonl /tmp/kvzap-attn-check > "$OUT/check-$n.log" 2>&1
  echo "check ($n decode kernel) rc=$?"
  grep -E "^(FAIL|PASS:|FAIL:)|^decode" "$OUT/check-$n.log" | sed "s/^/$n: /"
done
PYTHONUNBUFFERED=1 python3 scripts/gpu/kvzap-attn-sdpa.py 2>&1 | tee "$OUT/sdpa.log"
if [ "${KVZAP_MEMCHECK:-1}" != 0 ]; then # KVZAP_MEMCHECK=0: not this time (the kernels unchanged since a clean run)
  timeout 300 compute-sanitizer --tool memcheck --leak-check full /tmp/kvzap-attn-check --small > "$OUT/memcheck.log" 2>&1
  echo "memcheck rc=$?"; grep -E "ERROR SUMMARY|FAIL|: [0-9]+ failed" "$OUT/memcheck.log"
  if [ "${KVZAP_MEMCHECK:-1}" != default ]; then # KVZAP_MEMCHECK=default: the default kernels alone
    KVZAP_DECODE_KERNEL=1 timeout 300 compute-sanitizer --tool memcheck /tmp/kvzap-attn-check --small > "$OUT/memcheck-cta.log" 2>&1
    echo "memcheck (the CTA-wide decode kernel) rc=$?"; grep -E "ERROR SUMMARY|FAIL|: [0-9]+ failed" "$OUT/memcheck-cta.log"
  fi
fi
grep -E "^(FAIL|PASS:|FAIL:)|^decode|^sdpa|copy" "$OUT/check.log" "$OUT/sdpa.log" | sed 's/^[^:]*log://'
# The pool's CUDA virtual-memory backend, where the tree has its interface (kvzap-vmem.h)
if [ -f native/kvzap/kvzap-vmem.h ]; then
  nvcc -O2 -std=c++17 -arch=sm_$ARCH -Inative/kvzap -Icuda native/kvzap/kvzap-vmem-cuda.cu cuda/kvzap-attn.cu scripts/gpu/kvzap-vmem-check.cpp -lcuda -o /tmp/kvzap-vmem-check \
    > "$OUT/vmem-build.log" 2>&1 && timeout 120 /tmp/kvzap-vmem-check 2>&1 | tee "$OUT/vmem.log"
  echo "vmem rc=$?"
fi
# The ggml-cuda glue and the patched ggml-cuda.cu compile (KVZAP_GGML_TREE: a patched llama.cpp tree with ggml/)
if [ -n "${KVZAP_GGML_TREE:-}" ]; then
  G=$KVZAP_GGML_TREE/ggml; F="-std=c++17 -arch=sm_$ARCH -O2 -I$G/include -I$G/src -I$G/src/ggml-cuda -Icuda -Inative/kvzap"
  ( nvcc $F -c $G/src/ggml-cuda/ggml-cuda.cu -o /tmp/ggml-cuda.o > "$OUT/ggml-build.log" 2>&1; echo "ggml-cuda.cu rc=$?" ) &
  nvcc $F -c cuda/kvzap-attn-ggml.cu -o /tmp/kvzap-attn-ggml.o > "$OUT/glue-build.log" 2>&1; echo "kvzap-attn-ggml.cu rc=$?"
  wait; tail -n 5 "$OUT/ggml-build.log" "$OUT/glue-build.log"
fi
