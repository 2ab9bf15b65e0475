#!/usr/bin/env bash
# The correctness checks of a CUDA addon built here, in the second call of a session (as call-carried.sh: the first
# unpacked .gpu with the testbed model; carry .gpu-cuda and dist): that it loads, then at the same time the standalone
# kernel checks (check-attn.sh, memcheck left out unless KVZAP_MEMCHECK says otherwise) and the end-to-end checks of
# the pool in VRAM against the CPU path and stock's cache (check-e2e.sh vram). No timings to report: the two share
# the GPU.   bash scripts/gpu/call-check-carried.sh [SECONDS]
set -u
t0=$(date +%s); limit=${1:-300}
KVZAP_BUILDS=none bash scripts/gpu/remote.sh scripts/gpu/check-load.sh > "$OUT/load.log" 2>&1
grep -E "loads|load:|no CUDA" "$OUT/load.log" || exit 1
mkdir -p "$OUT/attn"
KVZAP_MEMCHECK=${KVZAP_MEMCHECK:-0} OUT=$OUT/attn timeout $(( limit - 20 )) bash scripts/gpu/check-attn.sh > "$OUT/attn.log" 2>&1 &
attn=$!
KVZAP_BUILDS=none timeout $(( limit - 20 - ($(date +%s) - t0) )) bash scripts/gpu/remote.sh scripts/gpu/check-e2e.sh vram > "$OUT/e2e.log" 2>&1
grep -E "PASS|FAIL|decisions|rror|egmentation" "$OUT/e2e.log" | cut -c1-300 | head -30
wait $attn
grep -E "FAIL|: [0-9]+ failed|PASS:|memcheck|ERROR SUMMARY|vmem rc" "$OUT/attn.log" | cut -c1-200 | head -20
echo "call took $(( $(date +%s) - t0 ))s"
