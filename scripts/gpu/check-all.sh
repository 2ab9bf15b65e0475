#!/usr/bin/env bash
# Everything one GPU session checks, after remote.sh built the CUDA addon: the foundation's run, KVzap against its
# references, calibration (its oracle and MLP training against their CPU twins, and timings) and benchmark timings.
# Logs and JSON under $OUT.
set -u
export KVZAP_ADDON=$KVZAP_CUDA_ADDON
echo "=== kvzap run (issue 2)"; bash scripts/gpu/check-run.sh
echo "=== KVzap checks"; node scripts/gpu/check-kvzap.mjs .gpu/stories260K.gguf profiles/stories260K-linear
echo "=== kvzap run with the shipped profile"
node bin/kvzap.js run .gpu/testbed-28M-v0-q8_0.gguf --prompt "$(head -c 6000 .gpu/corpora/gutenberg-sherlock-holmes.txt | tail -c 4000)" -n 32 --temp 0 --json \
  | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const j=JSON.parse(s);console.log(JSON.stringify({policy:j.stats.kv.policy,tau:j.stats.kv.tau,bytesInUse:j.stats.kv.bytesInUse,bytesFullEquivalent:j.stats.kv.bytesFullEquivalent,promptTokPerSec:j.stats.promptTokensPerSecond,decodeTokPerSec:j.stats.decodeTokensPerSecond}))})"
echo "=== calibration: the CUDA oracle and MLP trainer against their CPU twins, calibrate timings"; bash scripts/gpu/check-calibration.sh
echo "=== bench speed (testbed, 4096)"
node bin/kvzap.js bench speed .gpu/testbed-28M-v0-q8_0.gguf --ctx 4096 --prompt-tokens 3968 --decode-tokens 128 --reps 3 --variants stock,stock-nofa,kvzap --out "$OUT/bench-speed-testbed.json" 2>/dev/null | tail -14
