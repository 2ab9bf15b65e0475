#!/usr/bin/env bash
# End to end on the GPU machine, after remote.sh put the addons in place (KVZAP_CUDA_ADDON, KVZAP_STOCK_ADDON):
# the KV pool in VRAM against stock and against the CPU path (check-vram.mjs: decisions per (layer, head, token),
# logits, the driver's memory), and greedy traces of stock llama.cpp and ours at τ = -1e9 on a prompt of 3500 tokens.
set -u
M=${KVZAP_E2E_MODEL:-.gpu-tb/testbed-28M-v0-q8_0.gguf}
P=profiles/testbed-28M-v0-linear
T=.gpu/corpora/gutenberg-sherlock-holmes.txt
echo "=== the KV pool in VRAM ($M)"
KVZAP_ADDON=$KVZAP_CUDA_ADDON node scripts/gpu/check-vram.mjs "$M" "$P" "$T"
echo "=== where the pool goes (KVZAP_VERBOSE=1)"
KVZAP_ADDON=$KVZAP_CUDA_ADDON KVZAP_VERBOSE=1 node bin/kvzap.js run "$M" --prompt "Once upon a time" -n 8 --temp 0 --ctx 32768 2>&1 | grep -E "KVzap memory|error" | head -4
if [ -n "${KVZAP_STOCK_ADDON:-}" ]; then
  echo "=== greedy: stock llama.cpp (unpatched, CUDA) against ours with KVzap at tau = -1e9 and off"
  KVZAP_ADDON=$KVZAP_STOCK_ADDON node scripts/gpu/greedy-trace.mjs "$M" "$T" "$OUT/trace-stock.json"
  KVZAP_ADDON=$KVZAP_CUDA_ADDON node scripts/gpu/greedy-trace.mjs "$M" "$T" "$OUT/trace-off.json" '{"policy":"full"}' "$OUT/trace-stock.json"
  KVZAP_ADDON=$KVZAP_CUDA_ADDON node scripts/gpu/greedy-trace.mjs "$M" "$T" "$OUT/trace-kvzap.json" "{\"policy\":\"kvzap\",\"profile\":\"$P\",\"tau\":-1e9}" "$OUT/trace-stock.json"
  node scripts/gpu/greedy-trace.mjs --compare "$OUT/trace-stock.json" "$OUT/trace-off.json"
  node scripts/gpu/greedy-trace.mjs --compare "$OUT/trace-stock.json" "$OUT/trace-kvzap.json"
fi
