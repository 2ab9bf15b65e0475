#!/usr/bin/env bash
# The GPU benchmark, after remote.sh put the addons in place: a random-weight model of Llama-3.1-8B's shapes
# (../shared/tools/synth_gguf.py, Q8_0 weights; made once per machine), then `kvzap bench sweep` over it.
#   bash scripts/gpu/bench-8b.sh OUT.json [sweep options]
set -u
MODEL=${KVZAP_8B:-/tmp/models/synth-llama-8b-q8_0.gguf}
if [ ! -f "$MODEL" ]; then
  mkdir -p "$(dirname "$MODEL")" && [ -d .gpu/gguf-py ] || tar -C .gpu -xJf .gpu/gguf-py.tar.xz
  t0=$(date +%s)
  PYTHONUNBUFFERED=1 python3 .gpu/synth_gguf.py --gguf-py .gpu/gguf-py --out "$MODEL.tmp" && mv "$MODEL.tmp" "$MODEL"
  echo "synthesised $MODEL ($(du -h "$MODEL" | cut -f1)) in $(( $(date +%s) - t0 ))s"
fi
out=$1; shift
KVZAP_ADDON=$KVZAP_CUDA_ADDON node bin/kvzap.js bench sweep "$MODEL" --stock-addon "$KVZAP_STOCK_ADDON" --file .gpu/corpora/gutenberg-sherlock-holmes.txt --out "$out" "$@"
