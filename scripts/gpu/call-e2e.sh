#!/usr/bin/env bash
# Third call (carry .gpu-tb and dist): the end-to-end checks on the testbed model (check-e2e.sh), then a sweep with
# q8_0 KV (KVZAP_SWEEP_ARGS) while time remains.
set -u
KVZAP_BUILDS=stock bash scripts/gpu/remote.sh scripts/gpu/check-e2e.sh > "$OUT/e2e.log" 2>&1
grep -E "PASS|FAIL|greedy|decisions|agree" "$OUT/e2e.log" | head -30
KVZAP_SWEEP_NAME=sweep-q8_0 KVZAP_SWEEP_ARGS="${KVZAP_SWEEP_ARGS:---kv-types q8_0 --engines stock,kvzap-off,kvzap@0.25,kvzap@1 --decode-tokens 16 --decode-reps 3}" \
  bash scripts/gpu/remote.sh scripts/gpu/sweep.sh 2>&1 | tail -25
