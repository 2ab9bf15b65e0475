#!/usr/bin/env bash
# After remote.sh: ours alone on the GPU, quickly: the KVzap checks on stories260K, then a short sweep of ours on the
# 8B model (made by synth-8b.sh, waited for) to see the path end to end and how long each depth takes.
set -u
KVZAP_ADDON=$KVZAP_CUDA_ADDON node -e "const s=require(process.env.KVZAP_ADDON).systemInfo(); console.log(s.engine, s.backend, JSON.stringify(s.devices.map(d=>[d.description, d.freeBytes, d.totalBytes])))"
KVZAP_ADDON=$KVZAP_CUDA_ADDON node scripts/gpu/check-kvzap.mjs .gpu/stories260K.gguf profiles/stories260K-linear 2>&1 | tail -8
time bash scripts/gpu/bench-8b.sh "$OUT/sweep-validate.json" --engines kvzap-off,kvzap@1,kvzap@0.25 --depths 4096,32768 --kv-types f16 --decode-tokens 16 --decode-reps 2 2>&1 | tee "$OUT/sweep-validate.log" | tail -25
