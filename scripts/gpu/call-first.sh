#!/usr/bin/env bash
# A first GPU call: the stock engine builds (into native/build-stock, kept for the next calls while the machine stays
# warm) while the 8B model is made and a short sweep of ours checks the path end to end. Logs under $OUT.
set -u
export KVZAP_BUILDS=stock
bash scripts/gpu/remote.sh > "$OUT/remote.log" 2>&1 &
RPID=$!
export PATH=/tmp/nodebin:$PATH
for i in $(seq 1 60); do [ -x /tmp/nodebin/node ] && [ -f node_modules/.kvzap-gpu ] && break; sleep 1; done
export KVZAP_CUDA_ADDON=$PWD/native/build-cuda/kvzap.node
for i in $(seq 1 60); do [ -f "$KVZAP_CUDA_ADDON" ] && break; sleep 1; done
for d in /usr/local/cuda/lib64 $(dirname "$(find / -name 'libcublas.so.13' -not -path '/proc/*' 2>/dev/null | head -1)"); do export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; done
KVZAP_ADDON=$KVZAP_CUDA_ADDON node -e "const s=require(process.env.KVZAP_ADDON).systemInfo(); console.log(s.engine, s.backend, JSON.stringify(s.devices.map(d=>[d.description, d.freeBytes, d.totalBytes])))"
KVZAP_ADDON=$KVZAP_CUDA_ADDON node scripts/gpu/check-kvzap.mjs .gpu/stories260K.gguf profiles/stories260K-linear 2>&1 | tail -8
KVZAP_STOCK_ADDON=none bash scripts/gpu/bench-8b.sh "$OUT/sweep-first.json" --engines kvzap-off,kvzap@1,kvzap@0.25 --depths 4096,32768 --kv-types f16 --decode-tokens 16 --decode-reps 2 2>&1 | tee "$OUT/sweep-first.log" | tail -30
wait $RPID
cat "$OUT/summary.txt"; ls -la native/build-stock/kvzap.node
