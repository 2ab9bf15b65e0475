#!/usr/bin/env bash
# First call of a GPU session when no CUDA addon was built here (carry .gpu and dist; pack.sh put the patched and the
# stock source in .gpu): unpacks node and the runtime, starts both builds and the 8B model in sessions of their own
# (the machine keeps them while it stays warm), and meanwhile runs the standalone kernel checks and SDPA timings
# (check-attn.sh); then waits for our CUDA addon, at most until the call's limit is near.
set -u
t0=$(date +%s)
KVZAP_BUILDS=none bash scripts/gpu/remote.sh > "$OUT/setup.log" 2>&1
mkdir -p /tmp/bg
setsid nohup env OUT=/tmp/bg KVZAP_BUILDS="cuda stock" bash scripts/gpu/remote.sh > /tmp/bg/builds.log 2>&1 < /dev/null &
setsid nohup bash scripts/gpu/synth-8b.sh > /tmp/bg/synth.log 2>&1 < /dev/null &
mkdir -p "$OUT/attn"
OUT=$OUT/attn bash scripts/gpu/check-attn.sh > "$OUT/attn.log" 2>&1
grep -E "FAIL|PASS|^decode|^sdpa|copy|memcheck|ERROR SUMMARY" "$OUT/attn.log" | cut -c1-300 | tail -40
while [ ! -f native/build-cuda/kvzap.node ] && [ $(( $(date +%s) - t0 )) -lt 560 ]; do sleep 5; done
cat /tmp/bg/summary.txt 2>/dev/null; tail -2 /tmp/bg/synth.log
echo "call took $(( $(date +%s) - t0 ))s"
