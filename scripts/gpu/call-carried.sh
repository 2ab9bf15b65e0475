#!/usr/bin/env bash
# The second call of a GPU session whose CUDA addon of ours was built here (build-here.sh, pack.sh), while the machine
# is warm: the first, `KVZAP_CMAKE_EXTRA="$(bash scripts/gpu/build-here.sh --flags)" KVZAP_START_BUILDS=stock bash
# scripts/gpu/call-setup.sh` (carry .gpu and dist: with .gpu-cuda they are more than a call carries), unpacked node
# and began the stock build with build-here.sh's CPU flags (the same code for the CPU as ours) and the 8B model. This
# one (carry .gpu-cuda and dist) unpacks the addon, checks that it loads (else builds ours there, from .gpu's source,
# in the background), then runs call-next.sh with the caller's settings.   bash scripts/gpu/call-carried.sh [SECONDS]
set -u
t0=$(date +%s)
KVZAP_BUILDS=none bash scripts/gpu/remote.sh scripts/gpu/check-load.sh > "$OUT/load.log" 2>&1
grep -E "loads|load:|no CUDA" "$OUT/load.log"
if ! grep -q "^loads: .*build-cuda" "$OUT/load.log"; then
  rm -f native/build-cuda/kvzap.node # ours there, with the CPU flags stock was built with
  setsid nohup env OUT=/tmp/bg KVZAP_BUILDS=cuda KVZAP_CMAKE_EXTRA="$(bash scripts/gpu/build-here.sh --flags)" bash scripts/gpu/remote.sh > /tmp/bg/builds-cuda.log 2>&1 < /dev/null &
  while ! grep -q "build native/build-cuda:" /tmp/bg/summary.txt 2>/dev/null && [ $(( $(date +%s) - t0 )) -lt 300 ]; do sleep 5; done
fi
bash scripts/gpu/call-next.sh $(( ${1:-585} - ($(date +%s) - t0) ))
