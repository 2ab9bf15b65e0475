#!/usr/bin/env bash
# A third call, while the machine stays warm: a sweep with q8_0 KV (KVZAP_SWEEP_ARGS to change it).
set -u
KVZAP_SWEEP_NAME=sweep-q8_0 KVZAP_SWEEP_ARGS="${KVZAP_SWEEP_ARGS:---kv-types q8_0 --engines stock,kvzap-off,kvzap@0.25,kvzap@1 --decode-tokens 16 --decode-reps 2}" \
  KVZAP_BUILDS=none bash scripts/gpu/remote.sh scripts/gpu/sweep.sh 2>&1 | tail -25
