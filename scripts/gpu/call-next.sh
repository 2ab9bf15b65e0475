#!/usr/bin/env bash
# A later call of a GPU session, on the machine call-one.sh left warm (carry dist, and .gpu-tb for the end-to-end
# checks): KVZAP_E2E=1 runs check-e2e.sh vram first (the testbed against stock's cache and against the CPU path), then
# the sweep of KVZAP_SWEEP_ARGS under KVZAP_SWEEP_NAME until the call's limit is near.  bash scripts/gpu/call-next.sh [SECONDS]
set -u
t0=$(date +%s); limit=${1:-585}
left() { echo $(( limit - ($(date +%s) - t0) )); }
N=${KVZAP_SWEEP_NAME:-sweep-b}
# KVZAP_ATTN=1: the standalone kernel checks and SDPA timings first (check-attn.sh)
if [ -n "${KVZAP_ATTN:-}" ]; then
  KVZAP_BUILDS=none bash scripts/gpu/remote.sh > "$OUT/setup.log" 2>&1 # puts a carried .gpu-cuda addon in place
  mkdir -p "$OUT/attn"
  OUT=$OUT/attn timeout 240 bash scripts/gpu/check-attn.sh > "$OUT/attn.log" 2>&1
  grep -E "FAIL|PASS:|^decode|^sdpa (cudnn|default)|copy|memcheck|ERROR SUMMARY|vmem rc" "$OUT/attn.log" | cut -c1-200 | tail -24
  echo "checks done at $(( $(date +%s) - t0 ))s"
fi
# KVZAP_WAIT_STOCK=1: the stock build that call-start.sh began
if [ -n "${KVZAP_WAIT_STOCK:-}" ]; then
  while [ ! -f native/build-stock/kvzap.node ] && [ "$(left)" -gt 60 ]; do sleep 5; done
  cat /tmp/bg/summary.txt 2>/dev/null; tail -1 /tmp/bg/synth.log; echo "stock waited for until $(( $(date +%s) - t0 ))s"
fi
if [ -n "${KVZAP_E2E:-}" ]; then
  KVZAP_BUILDS=none timeout 200 bash scripts/gpu/remote.sh scripts/gpu/check-e2e.sh vram > "$OUT/e2e.log" 2>&1
  grep -E "PASS|FAIL|decisions|nvidia-smi|rror|egmentation" "$OUT/e2e.log" | cut -c1-420 | head -30
  echo "e2e done at $(( $(date +%s) - t0 ))s"
fi
if [ -n "${KVZAP_SWEEP_ARGS:-}" ] && [ "$(left)" -gt 60 ]; then
  KVZAP_SWEEP_NAME=$N KVZAP_BUILDS=none timeout "$(( $(left) - 10 ))" bash scripts/gpu/remote.sh scripts/gpu/sweep.sh > "$OUT/sweep.log" 2>&1
  cp "/tmp/$N.log" "$OUT/" 2>/dev/null
  grep -vE "^  depth [0-9]+: (decode|[0-9]+ of)" "/tmp/$N.log" | tail -40
fi
rm -f "$OUT/checks.log" "$OUT"/cmake-*.log
echo "call took $(( $(date +%s) - t0 ))s"
