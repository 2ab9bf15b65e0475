#!/usr/bin/env bash
# A GPU timeline of each engine's prefill and decode steps, for machines without nsys (after remote.sh put the addons
# in place): builds cupti-trace.cpp, runs decode-steps.mjs under it (CUDA_INJECTION64_PATH), and sums the trace per
# ubatch and per step with trace-steps.py: wall, GPU busy and idle, the kernels, and the API calls that the GPU
# waits on. Traced runs are slower than plain ones; compare engines within the trace, not with the sweep.
#   bash scripts/gpu/step-trace.sh [ENGINES] [DEPTH] [STEPS]     logs under $OUT/trace
set -u
MODEL=$(bash scripts/gpu/synth-8b.sh) || exit 1
ENGINES=${1:-stock,kvzap-off,kvzap@1,kvzap@0.25}
DEPTH=${2:-16384}
STEPS=${3:-32}
P=$OUT/trace; mkdir -p "$P"
CUDA=$(dirname "$(dirname "$(command -v nvcc)")")
INC=$(dirname "$(ls "$CUDA"/include/cupti.h "$CUDA"/extras/CUPTI/include/cupti.h 2>/dev/null | head -1)")
LIB=$(dirname "$(ls "$CUDA"/lib64/libcupti.so "$CUDA"/lib/libcupti.so "$CUDA"/extras/CUPTI/lib64/libcupti.so \
  "$CUDA"/targets/*/lib/libcupti.so 2>/dev/null | head -1)")
[ -n "$INC" ] && [ -n "$LIB" ] || { echo "no CUPTI under $CUDA"; exit 0; }
g++ -O2 -shared -fPIC -I"$INC" scripts/gpu/cupti-trace.cpp -o /tmp/libkvzap-trace.so -L"$LIB" -lcupti \
  -Wl,-rpath,"$LIB" > "$P/build.log" 2>&1 || { cat "$P/build.log"; exit 1; }
for e in ${ENGINES//,/ }; do
  [ "$e" = stock ] && a=${KVZAP_STOCK_ADDON:-} || a=$KVZAP_CUDA_ADDON
  [ -f "$a" ] || { echo "$e: no addon"; continue; }
  d=$P/${e/@/-at-}; rm -rf "$d"; mkdir -p "$d"
  KVZAP_TRACE_DIR=$d KVZAP_PHASE_MARKS=$d/marks.jsonl CUDA_INJECTION64_PATH=/tmp/libkvzap-trace.so KVZAP_ADDON=$a \
    timeout 200 node scripts/gpu/decode-steps.mjs "$MODEL" "$DEPTH" "$STEPS" "$e" > "$d/run.log" 2>&1
  tail -2 "$d/run.log"
  for t in "$d"/trace-*.csv; do
    [ -f "$t" ] && python3 scripts/gpu/trace-steps.py "$t" "$d/marks.jsonl" "$e" | tee "$d/summary.txt"
  done
done
