#!/usr/bin/env bash
# The GPU benchmark, after remote.sh put the addons in place: `kvzap bench sweep` over the random-weight model of
# Llama-3.1-8B's shapes (synth-8b.sh), stock from KVZAP_STOCK_ADDON, ours from KVZAP_CUDA_ADDON.
#   bash scripts/gpu/bench-8b.sh OUT.json [sweep options]
set -u
MODEL=$(bash scripts/gpu/synth-8b.sh) || exit 1
out=$1
shift
KVZAP_ADDON=$KVZAP_CUDA_ADDON node bin/kvzap.js bench sweep "$MODEL" --stock-addon "${KVZAP_STOCK_ADDON:-none}" \
  --file .gpu/corpora/gutenberg-sherlock-holmes.txt --out "$out" "$@"
