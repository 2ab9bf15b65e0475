#!/usr/bin/env bash
# Where a decode step's time goes, per engine, on the 8B-shaped model, after remote.sh put the addons in place:
#   1. wall ms per token at DEPTHS, with ggml's CUDA graphs on and off (GGML_CUDA_DISABLE_GRAPHS), and kvzap's host ms
#      per token (decode-steps.mjs);
#   2. the kernels of a few decode steps under ncu (one metric, gpu__time_duration, clocks left alone): each kernel's
#      launches and µs per step (step-kernels.py), so that wall − kernel time is the time the GPU waits on the host.
#   bash scripts/gpu/step-profile.sh [ENGINES] [DEPTHS|-]     logs under $OUT/profile
set -u
MODEL=$(bash scripts/gpu/synth-8b.sh) || exit 1
ENGINES=${1:-stock,kvzap-off,kvzap@1,kvzap@0.25}
DEPTHS=${2:-4096,16384}
P=$OUT/profile; mkdir -p "$P"
addon_of() { [ "$1" = stock ] && echo "$KVZAP_STOCK_ADDON" || echo "$KVZAP_CUDA_ADDON"; }
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for e in ${ENGINES//,/ }; do
  a=$(addon_of "$e"); [ -f "$a" ] || { echo "$e: no addon"; continue; }
  [ "$DEPTHS" = - ] && continue # DEPTHS "-": the kernels under ncu only
  for d in ${DEPTHS//,/ }; do
    KVZAP_ADDON=$a node scripts/gpu/decode-steps.mjs "$MODEL" "$d" 64 "$e" 2>>"$P/errors.log" | sed 's/^/graphs on:  /'
    GGML_CUDA_DISABLE_GRAPHS=1 KVZAP_ADDON=$a node scripts/gpu/decode-steps.mjs "$MODEL" "$d" 64 "$e" 2>>"$P/errors.log" | sed 's/^/graphs off: /'
  done
done
[ -n "$NCU" ] || { echo "no ncu"; exit 0; }
for e in ${ENGINES//,/ }; do
  a=$(addon_of "$e"); [ -f "$a" ] || continue
  # a 1024-token prompt and 48 steps; kernels 15000 to 18000 lie in the decode steps of every engine
  KVZAP_ADDON=$a timeout 150 "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv --print-units base \
    --launch-skip 15000 --launch-count 3000 --log-file "$P/ncu-${e/@/-at-}.csv" \
    node scripts/gpu/decode-steps.mjs "$MODEL" 1024 48 "$e" > "$P/ncu-${e/@/-at-}.out" 2>&1
  python3 scripts/gpu/step-kernels.py "$P/ncu-${e/@/-at-}.csv" "$e"
done
