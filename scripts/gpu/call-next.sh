#!/usr/bin/env bash
# A call on a warm GPU machine that call-setup.sh (or call-build.sh) set up; carry dist, and .gpu-cuda for a CUDA addon
# built here, .gpu-tb for the end-to-end checks. In order, each when asked for:
#   KVZAP_ATTN=1   the standalone kernel checks and SDPA timings (check-attn.sh), with .gpu/base/ (kvzap-attn.cu and
#                  its headers) that kernel's checks and timings in the same run (an A/B), then, with KVZAP_CARVEOUTS=1,
#                  the carveout experiment (the decode kernel after a stand-in matmul: the driver's carveouts, the
#                  merge's at 100, the device's preference for shared memory)
#   KVZAP_WAIT=1   waits for the builds call-setup.sh began (KVZAP_WAIT=cuda: for ours alone)
#   KVZAP_AB="CASES"  decode-ab.sh's cases (KVZAP_AB_STEPS steps each, default 48)
#   KVZAP_E2E=1    check-e2e.sh vram (the testbed against stock's cache and against the CPU path)
#   KVZAP_DIAG=1   prefill-diag.sh: the prefill's host phases, with the fused store and PDL off, an nsys trace
#   KVZAP_PROFILE=1  step-profile.sh: where a decode step's time goes (wall, host, kernels under ncu) per engine
#   KVZAP_TRACE=1  step-trace.sh: a CUPTI timeline of each engine's prefill ubatches and decode steps
#                  (KVZAP_TRACE_ARGS: its ENGINES DEPTH STEPS)
#   KVZAP_SWEEP_ARGS=...   the sweep, under KVZAP_SWEEP_NAME, until the call's limit is near (with KVZAP_E2E, only
#                  when the end-to-end checks passed)
#   bash scripts/gpu/call-next.sh [SECONDS]
set -u
t0=$(date +%s); limit=${1:-585}
left() { echo $(( limit - ($(date +%s) - t0) )); }
# waits while call-setup.sh's builds run (and, with an argument, until that command succeeds), not past the limit
wait_builds() {
  while ! { [ $# -gt 0 ] && "$@"; } && kill -0 "$(cat /tmp/bg/builds.pid 2>/dev/null)" 2>/dev/null && [ "$(left)" -gt 60 ]; do
    sleep 5
  done
}
N=${KVZAP_SWEEP_NAME:-sweep-b}
# KVZAP_ATTN=1: the standalone kernel checks and SDPA timings first (check-attn.sh)
if [ -n "${KVZAP_ATTN:-}" ]; then
  KVZAP_BUILDS=none bash scripts/gpu/remote.sh > "$OUT/setup.log" 2>&1 # puts a carried .gpu-cuda addon in place
  mkdir -p "$OUT/attn"
  # .gpu/base/: another tree's kvzap-attn.cu with its headers beside it, built beside the tree's (an A/B, below)
  [ -f .gpu/base/kvzap-attn.cu ] && nvcc -O3 -std=c++17 -arch=sm_90 -Icuda -Inative/kvzap .gpu/base/kvzap-attn.cu native/kvzap/kvzap-moves.cpp scripts/gpu/kvzap-attn-check.cpp scripts/gpu/stream-kernel.cu -o /tmp/check-base > "$OUT/base-build.log" 2>&1 &
  OUT=$OUT/attn timeout "${KVZAP_ATTN_LIMIT:-360}" bash scripts/gpu/check-attn.sh > "$OUT/attn.log" 2>&1
  grep -E "FAIL|PASS:|^decode|^(cta|warp): decode|^sdpa (cudnn|default)|copy|memcheck|ERROR SUMMARY|vmem rc" "$OUT/attn.log" | cut -c1-200 | tail -64
  # that kernel's checks and timings, then the tree's timings again: each side's taken on both sides of the other's
  if [ -f .gpu/base/kvzap-attn.cu ]; then
    wait
    [ -x /tmp/check-base ] && KVZAP_TIMINGS=$OUT/attn/base.jsonl timeout 120 /tmp/check-base 2>&1 | tee "$OUT/base.log" | grep -E "^decode|FAIL|PASS:" | sed 's/^/base: /'
    KVZAP_TIMINGS=$OUT/attn/again.jsonl timeout 60 /tmp/kvzap-attn-check --time 2>&1 | grep -E "^decode" | sed 's/^/again: /' | tee "$OUT/again.log"
  fi
  # what switching shared-memory carveouts between the attention kernel and its neighbours costs (KVZAP_INTERLEAVE:
  # each call after a stand-in for a weight matmul), with the driver's choices and with two ways to avoid a switch
  [ -n "${KVZAP_CARVEOUTS:-}" ] && for v in KVZAP_DEFAULT=1 KVZAP_CARVEOUT=100 KVZAP_CUDA_PREFER_SHARED=1; do
    env "$v" KVZAP_INTERLEAVE=1 KVZAP_TIME_L=1024,4096,16384 KVZAP_TIME_TYPES=f16 timeout 60 /tmp/kvzap-attn-check --time 2>&1 |
      grep -E "^decode|^interleave" | sed "s/^/$v: /"
  done | tee "$OUT/interleave.log"
  echo "checks done at $(( $(date +%s) - t0 ))s"
fi
if [ -n "${KVZAP_WAIT:-}" ]; then # KVZAP_WAIT=cuda: for our build alone (the stock build goes on behind it)
  built() { [ "${KVZAP_WAIT}" = cuda ] && grep -q "build native/build-cuda:" /tmp/bg/summary.txt 2>/dev/null; }
  wait_builds built
  cat /tmp/bg/summary.txt 2>/dev/null; tail -1 /tmp/bg/synth.log; echo "builds waited for until $(( $(date +%s) - t0 ))s"
fi
# KVZAP_AB="CASES": decode-ab.sh's cases (one build, a switch on and off), once our build is there
if [ -n "${KVZAP_AB:-}" ] && [ "$(left)" -gt 120 ]; then
  KVZAP_BUILDS=none STEPS=${KVZAP_AB_STEPS:-48} timeout "$(( $(left) - 60 ))" bash scripts/gpu/remote.sh scripts/gpu/decode-ab.sh "$KVZAP_AB" > "$OUT/ab.log" 2>&1
  grep -E "^(stock|kvzap)[^ ]*: " "$OUT/ab.log" | cut -c1-250
  echo "ab done at $(( $(date +%s) - t0 ))s"
fi
if [ -n "${KVZAP_E2E:-}" ]; then
  KVZAP_BUILDS=none timeout 300 bash scripts/gpu/remote.sh scripts/gpu/check-e2e.sh vram > "$OUT/e2e.log" 2>&1
  grep -E "PASS|FAIL|decisions|nvidia-smi|rror|egmentation" "$OUT/e2e.log" | cut -c1-420 | head -30
  echo "e2e done at $(( $(date +%s) - t0 ))s"
fi
if [ -n "${KVZAP_DIAG:-}" ] && [ "$(left)" -gt 90 ]; then
  mkdir -p "$OUT/diag"
  OUT=$OUT/diag KVZAP_BUILDS=none timeout "$(( $(left) - 20 ))" bash scripts/gpu/remote.sh scripts/gpu/prefill-diag.sh > "$OUT/diag.log" 2>&1
  grep -vE "^addons|^NVIDIA" "$OUT/diag.log" | cut -c1-230 | tail -70
  echo "diag done at $(( $(date +%s) - t0 ))s"
fi
if [ -n "${KVZAP_PROFILE:-}" ] && [ "$(left)" -gt 120 ]; then
  KVZAP_BUILDS=none timeout "$(( $(left) - 30 ))" bash scripts/gpu/remote.sh scripts/gpu/step-profile.sh > "$OUT/profile.log" 2>&1
  grep -E "^graphs|steps; kernel|/step" "$OUT/profile.log" | cut -c1-200 | head -80
  echo "profile done at $(( $(date +%s) - t0 ))s"
fi
if [ -n "${KVZAP_TRACE:-}" ] && [ "$(left)" -gt 90 ]; then
  KVZAP_BUILDS=none timeout "$(( $(left) - 20 ))" bash scripts/gpu/remote.sh scripts/gpu/step-trace.sh ${KVZAP_TRACE_ARGS:-} > "$OUT/trace.log" 2>&1
  grep -vE "^addons|^NVIDIA" "$OUT/trace.log" | cut -c1-200 | tail -120
  echo "trace done at $(( $(date +%s) - t0 ))s"
fi
# with KVZAP_E2E: no sweep of an addon that failed its end-to-end checks (what it would time is not what is checked)
if [ -n "${KVZAP_SWEEP_ARGS:-}" ] && [ -n "${KVZAP_E2E:-}" ] && { grep -q "FAIL" "$OUT/e2e.log" || ! grep -q "PASS" "$OUT/e2e.log"; }; then
  echo "no sweep: the end-to-end checks failed"; KVZAP_SWEEP_ARGS=
fi
if [ -n "${KVZAP_SWEEP_ARGS:-}" ]; then # every build there first (the stock one too)
  wait_builds
  if kill -0 "$(cat /tmp/bg/builds.pid 2>/dev/null)" 2>/dev/null; then
    echo "no sweep: the builds were still running at $(( $(date +%s) - t0 ))s (a next call within 30 s finds them)"; KVZAP_SWEEP_ARGS=
  fi
fi
if [ -n "${KVZAP_SWEEP_ARGS:-}" ] && [ "$(left)" -gt 60 ]; then
  KVZAP_SWEEP_NAME=$N KVZAP_BUILDS=none timeout "$(( $(left) - 10 ))" bash scripts/gpu/remote.sh scripts/gpu/sweep.sh > "$OUT/sweep.log" 2>&1
  cp "/tmp/$N.log" "$OUT/" 2>/dev/null
  grep -vE "^  depth [0-9]+: (decode|[0-9]+ of)" "/tmp/$N.log" | tail -40
fi
rm -f "$OUT/checks.log" "$OUT"/cmake-*.log
echo "call took $(( $(date +%s) - t0 ))s"
