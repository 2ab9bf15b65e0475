#!/usr/bin/env bash
# Decode steps side by side on the 8B-shaped model, after remote.sh put the addons in place: for each CASE
# (ENGINE@DEPTH, or ENGINE@DEPTH@VAR=VALUE to run it with one environment variable set, e.g. KVZAP_CUDA_FUSE=0),
# decode-steps.mjs's wall ms and kvzap host ms per decoded token. Cases run in the order given, each in a process of
# its own; STEPS (default 64) decoded tokens each. An A/B of one build: the same case with and without a switch.
#   bash scripts/gpu/decode-ab.sh "kvzap@1@16384 kvzap@1@16384@KVZAP_CUDA_FUSE=0 stock@16384"
set -u
MODEL=$(bash scripts/gpu/synth-8b.sh) || exit 1
for c in $1; do
  IFS=@ read -r e a b c2 <<< "$c"
  # kvzap's engine holds its kept fraction (kvzap@0.25): the depth is the field after it
  if [ "$e" = kvzap ]; then e="$e@$a"; depth=$b; var=$c2; else depth=$a; var=$b; fi
  addon=$([ "$e" = stock ] && echo "$KVZAP_STOCK_ADDON" || echo "$KVZAP_CUDA_ADDON")
  [ -f "$addon" ] || { echo "$c: no addon"; continue; }
  out=$(env ${var:+"$var"} KVZAP_ADDON="$addon" node scripts/gpu/decode-steps.mjs "$MODEL" "$depth" "${STEPS:-64}" "$e" 2>&1 | tail -1)
  echo "$c: $out"
done
