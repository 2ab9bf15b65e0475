#!/usr/bin/env bash
# One call on a fresh machine with little device time left (carry .gpu without the stock source, .gpu-tb, dist):
# builds our CUDA addon, runs the end-to-end GPU-vs-CPU check on the testbed, then ours alone at the longest depth
# (KVZAP_SWEEP_ARGS), each part cut by a deadline so that the logs come back.  bash scripts/gpu/call-last.sh SECONDS
set -u
t0=$(date +%s); limit=${1:-560}
left() { echo $(( limit - ($(date +%s) - t0) - 10 )); }
mkdir -p /tmp/bg
setsid nohup bash -c 'KVZAP_BUILDS=none bash scripts/gpu/remote.sh >/dev/null 2>&1; bash scripts/gpu/synth-8b.sh' > /tmp/bg/synth.log 2>&1 < /dev/null &
KVZAP_BUILDS=cuda timeout "$(left)" bash scripts/gpu/remote.sh > "$OUT/build.log" 2>&1
tail -2 "$OUT/build.log"; echo "built at $(( $(date +%s) - t0 ))s"
KVZAP_BUILDS=none timeout 150 bash scripts/gpu/remote.sh scripts/gpu/check-e2e.sh vram > "$OUT/e2e.log" 2>&1
grep -E "PASS|FAIL|decisions|agree|logit|VRAM|MiB|rror" "$OUT/e2e.log" | cut -c1-300 | head -40
echo "e2e done at $(( $(date +%s) - t0 ))s"; tail -1 /tmp/bg/synth.log
KVZAP_SWEEP_NAME=sweep-128k KVZAP_BUILDS=none timeout "$(left)" bash scripts/gpu/remote.sh scripts/gpu/sweep.sh > "$OUT/sweep.log" 2>&1
cp /tmp/sweep-128k.log "$OUT/" 2>/dev/null; grep -v "^  depth" "$OUT/sweep.log" | tail -30; grep "depth" /tmp/sweep-128k.log
rm -f "$OUT/checks.log"; [ -f native/build-cuda/kvzap.node ] && rm -f "$OUT"/cmake-*.log
echo "call took $(( $(date +%s) - t0 ))s"
