#!/usr/bin/env bash
# The KV pool in VRAM on the GPU machine, after remote.sh built the CUDA addon (KVZAP_BUILDS=cuda is enough): the
# end-to-end checks of check-vram.mjs, and the memory's log line showing where the pool was placed.
set -u
export KVZAP_ADDON=$KVZAP_CUDA_ADDON
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
node scripts/gpu/check-vram.mjs .gpu/testbed-28M-v0-q8_0.gguf profiles/testbed-28M-v0-linear .gpu/corpora/gutenberg-sherlock-holmes.txt
echo "=== where the pool goes (KVZAP_VERBOSE=1)"
KVZAP_VERBOSE=1 node bin/kvzap.js run .gpu/testbed-28M-v0-q8_0.gguf --prompt "Once upon a time" -n 8 --temp 0 --ctx 32768 2>&1 | grep -E "KVzap memory|CUDA0|error" | head -8
