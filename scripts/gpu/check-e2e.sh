#!/usr/bin/env bash
# End to end on the GPU machine, after remote.sh put the addons in place (KVZAP_CUDA_ADDON; KVZAP_STOCK_ADDON for the
# greedy part): the KV pool in VRAM against the CPU path (check-vram.mjs: decisions per (layer, head, token), logits,
# the driver's memory), and greedy traces of stock llama.cpp and ours at τ = -1e9 on a prompt of 3500 tokens, on the
# testbed model and on its exact F32 copy (matmuls in f32, so that attention rounding is not amplified by 8-bit
# activations, as in the CPU tests). The pool's checks run with f16 KV on both and with q8_0 KV on the copy.
#   bash scripts/gpu/check-e2e.sh [vram|greedy|all]
set -u
Q=${KVZAP_E2E_MODEL:-$(ls .gpu-tb/testbed-28M-v0-q8_0.gguf .gpu/testbed-28M-v0-q8_0.gguf 2>/dev/null | head -1)}
P=profiles/testbed-28M-v0-linear
T=.gpu/corpora/gutenberg-sherlock-holmes.txt
F=$(node -e "import('$PWD/.gpu/dq/test/helpers/dequantize.js').then((m) => console.log(m.dequantizedCopy('$PWD/$Q')))")
case "${1:-all}" in vram|all)
  # q8_0 KV on the F32 copy alone: on the Q8_0 file, 8-bit activations amplify the rounding of Q that stock's q8_0
  # path does and the CPU path does not (on the CPU there, 8 of 32 greedy tokens agree with stock; on the copy, 32)
  for run in "f16 $F" "f16 $Q" "q8_0 $F"; do
    kv=${run%% *} m=${run#* }
    echo "=== the KV pool in VRAM ($m, KV $kv)"
    KVZAP_ADDON=$KVZAP_CUDA_ADDON node scripts/gpu/check-vram.mjs "$m" "$P" "$T" "$kv"
  done
  echo "=== where the pool goes (KVZAP_VERBOSE=1)"
  KVZAP_ADDON=$KVZAP_CUDA_ADDON KVZAP_VERBOSE=1 node bin/kvzap.js run "$Q" --prompt "Once upon a time" -n 8 --temp 0 --ctx 32768 2>&1 | grep -E "KVzap memory|error" | head -4
;; esac
case "${1:-all}" in greedy|all)
  for M in "$F" "$Q"; do
    n=$(basename "$M" .gguf)
    echo "=== greedy on $n: stock llama.cpp (unpatched, CUDA) against ours with KVzap off and at tau = -1e9"
    KVZAP_ADDON=$KVZAP_STOCK_ADDON node scripts/gpu/greedy-trace.mjs "$M" "$T" "/tmp/trace-stock-$n.json"
    KVZAP_ADDON=$KVZAP_CUDA_ADDON node scripts/gpu/greedy-trace.mjs "$M" "$T" "/tmp/trace-off-$n.json" '{"policy":"full"}' "/tmp/trace-stock-$n.json"
    KVZAP_ADDON=$KVZAP_CUDA_ADDON node scripts/gpu/greedy-trace.mjs "$M" "$T" "/tmp/trace-kvzap-$n.json" "{\"policy\":\"kvzap\",\"profile\":\"$P\",\"tau\":-1e9}" "/tmp/trace-stock-$n.json"
    node scripts/gpu/greedy-trace.mjs --compare "/tmp/trace-stock-$n.json" "/tmp/trace-off-$n.json"
    node scripts/gpu/greedy-trace.mjs --compare "/tmp/trace-stock-$n.json" "/tmp/trace-kvzap-$n.json"
  done
;; esac
