#!/usr/bin/env bash
# After remote.sh: where the prefill's fixed cost per ubatch goes, on the 8B (synth-8b.sh), f16 KV, with the memory's
# host phases printed (KVZAP_HOST_PHASES=1). Steps (KVZAP_DIAG_STEPS; stock is left out without its addon):
#   base    16k prefills of stock, kvzap-off, kvzap@1 and kvzap@0.25
#   deep    the same at 128k, with decode
#   t1      kvzap@0.25 on one host thread (the decisions run on the batch threads)
#   nofuse  kvzap@1 and kvzap@0.25 with the fused store off (KVZAP_CUDA_FUSE=0)
#   nopdl   kvzap-off and kvzap@0.25 with programmatic dependent launch off (GGML_CUDA_PDL=0)
#   nsys    kvzap@0.25's 16k prefill under nsys (where the machine has it): the CUDA API's and the kernels' sums
# Logs under $OUT.
#   KVZAP_DIAG_STEPS="base deep t1 nofuse nopdl nsys" bash scripts/gpu/prefill-diag.sh [DEPTH]
set -u
D=${1:-16384}
MODEL=$(bash scripts/gpu/synth-8b.sh) || exit 1
STEPS=" ${KVZAP_DIAG_STEPS:-base deep t1 nofuse nopdl nsys} "
sweep() { # [LAUNCH="a wrapper command"] sweep NAME ENGINES "MORE OPTIONS" [env...]
  local name=$1 engines=$2 more=$3
  shift 3
  [[ $STEPS == *" $name "* ]] || return 0
  [ -n "${KVZAP_STOCK_ADDON:-}" ] || engines=${engines#stock,}
  ${LAUNCH:-} env KVZAP_HOST_PHASES=1 "$@" KVZAP_ADDON="$KVZAP_CUDA_ADDON" node bin/kvzap.js bench sweep "$MODEL" \
    --stock-addon "${KVZAP_STOCK_ADDON:-none}" --file .gpu/corpora/gutenberg-sherlock-holmes.txt --kv-types f16 \
    --depths "$D" --engines "$engines" --decode-tokens 8 --decode-reps 1 --decode-warmup 2 $more --out "$OUT/diag-$name.json" \
    > "$OUT/diag-$name.log" 2>&1
  echo "== $name ($*)"
  grep -E "host phases|prefill|stock|kvzap" "$OUT/diag-$name.log" | grep -vE "^  depth [0-9]+: (decode|[0-9]+ of)" | cut -c1-230 | tail -30
}
command -v nsys && nsys --version
sweep base stock,kvzap-off,kvzap@1,kvzap@0.25 ""
sweep deep stock,kvzap-off,kvzap@0.25 "--depths 131072 --decode-tokens 32 --decode-reps 2 --decode-warmup 8"
sweep t1 kvzap@0.25 "--threads 1"
sweep nofuse kvzap@1,kvzap@0.25 "" KVZAP_CUDA_FUSE=0
sweep nopdl kvzap-off,kvzap@0.25 "" GGML_CUDA_PDL=0
if [[ $STEPS == *" nsys "* ]] && command -v nsys > /dev/null; then
  LAUNCH="nsys profile -o /tmp/diag-prefill --force-overwrite true --trace=cuda,osrt --sample=none --cpuctxsw=none --trace-fork-before-exec=true" \
    sweep nsys kvzap@0.25 "--decode-tokens 4 --decode-warmup 0"
  nsys stats --report cuda_api_sum,cuda_gpu_kern_sum,osrt_sum --format csv -o /tmp/diag-stats /tmp/diag-prefill.nsys-rep > "$OUT/nsys-stats.log" 2>&1
  for f in /tmp/diag-stats*.csv; do
    echo "== $(basename "$f")"
    head -25 "$f" | cut -c1-200
  done | tee "$OUT/nsys-sums.txt"
fi
