#!/usr/bin/env bash
# First call of a GPU session (carry .gpu and dist; pack.sh put the patched and the stock source in .gpu): starts
# both builds and the 8B model in sessions of their own (kept while the machine stays warm); meanwhile the standalone
# kernel checks and SDPA timings (check-attn.sh) and, when .gpu/kvzap-attn-base.cu is there, the decode timings of
# that earlier kernel in the same run (an A/B); then, the builds done, a first sweep (KVZAP_SWEEP_ARGS) until the
# call's limit is near.   bash scripts/gpu/call-one.sh [SECONDS]
set -u
t0=$(date +%s); limit=${1:-585}
left() { echo $(( limit - ($(date +%s) - t0) )); }
KVZAP_BUILDS=none bash scripts/gpu/remote.sh > "$OUT/setup.log" 2>&1
mkdir -p /tmp/bg
setsid nohup env OUT=/tmp/bg KVZAP_BUILDS="cuda stock" bash scripts/gpu/remote.sh > /tmp/bg/builds.log 2>&1 < /dev/null &
setsid nohup bash scripts/gpu/synth-8b.sh > /tmp/bg/synth.log 2>&1 < /dev/null &
mkdir -p "$OUT/attn"
OUT=$OUT/attn timeout "$(left)" bash scripts/gpu/check-attn.sh > "$OUT/attn.log" 2>&1
grep -E "FAIL|PASS|^decode|^sdpa|copy|memcheck|ERROR SUMMARY" "$OUT/attn.log" | cut -c1-220 | tail -24
if [ -f .gpu/kvzap-attn-base.cu ]; then
  cp .gpu/kvzap-attn-base.cu /tmp/kvzap-attn-base.cu
  nvcc -O3 -std=c++17 -arch=sm_90 -Icuda /tmp/kvzap-attn-base.cu scripts/gpu/kvzap-attn-check.cpp -o /tmp/check-base > "$OUT/base-build.log" 2>&1 &&
    timeout 60 /tmp/check-base --time 2>&1 | grep -E "^decode|FAIL|PASS" | sed 's/^/base: /' | tee "$OUT/base.log"
fi
echo "checks done at $(( $(date +%s) - t0 ))s"
while { [ ! -f native/build-cuda/kvzap.node ] || [ ! -f native/build-stock/kvzap.node ]; } && [ "$(left)" -gt 60 ]; do sleep 5; done
cat /tmp/bg/summary.txt 2>/dev/null; tail -1 /tmp/bg/synth.log
echo "builds waited for until $(( $(date +%s) - t0 ))s"
if [ -f native/build-cuda/kvzap.node ] && [ "$(left)" -gt 60 ]; then
  KVZAP_SWEEP_NAME=${KVZAP_SWEEP_NAME:-sweep-a} KVZAP_BUILDS=none timeout "$(( $(left) - 10 ))" bash scripts/gpu/remote.sh scripts/gpu/sweep.sh > "$OUT/sweep.log" 2>&1
  cp /tmp/${KVZAP_SWEEP_NAME:-sweep-a}.log "$OUT/" 2>/dev/null
  grep -vE "^  depth [0-9]+: (decode|[0-9]+ of)" /tmp/${KVZAP_SWEEP_NAME:-sweep-a}.log | tail -40
fi
rm -f "$OUT/checks.log" "$OUT"/cmake-*.log
echo "call took $(( $(date +%s) - t0 ))s"
