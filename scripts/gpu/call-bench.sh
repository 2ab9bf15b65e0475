#!/usr/bin/env bash
# Second call (carry .gpu-cuda and dist): the attention kernels against their double-precision twin and their decode
# timings against torch's SDPA (while the stock build started by call-setup.sh finishes), then `kvzap bench sweep`
# with f16 KV over the 8B model, stock first. Engines, depths and KV types: KVZAP_SWEEP_ARGS.
set -u
mkdir -p /tmp/attn
nvcc -O3 -std=c++17 -arch=sm_${KVZAP_CUDA_ARCH:-90} -Icuda cuda/kvzap-attn.cu scripts/gpu/kvzap-attn-check.cpp -o /tmp/kvzap-attn-check > /tmp/attn/build.log 2>&1 &&
  KVZAP_TIMINGS=/tmp/attn/timings.jsonl timeout 150 /tmp/kvzap-attn-check > /tmp/attn/check.log 2>&1
echo "attention check rc=$?" > "$OUT/attn.txt"
PYTHONUNBUFFERED=1 timeout 120 python3 scripts/gpu/kvzap-attn-sdpa.py > /tmp/attn/sdpa.log 2>&1
grep -E "^(FAIL|PASS:|FAIL:)|^decode|^sdpa|copy|checks" /tmp/attn/check.log /tmp/attn/sdpa.log | sed 's|^/tmp/attn/||' >> "$OUT/attn.txt"
tail -4 "$OUT/attn.txt"
KVZAP_BUILDS=stock bash scripts/gpu/remote.sh scripts/gpu/sweep.sh
