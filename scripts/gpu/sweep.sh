#!/usr/bin/env bash
# After remote.sh: the sweep of bench-8b.sh, its JSON and log under $OUT (name and options from KVZAP_SWEEP_NAME and
# KVZAP_SWEEP_ARGS).
set -u
N=${KVZAP_SWEEP_NAME:-sweep-f16}
# shellcheck disable=SC2086
bash scripts/gpu/bench-8b.sh "$OUT/$N.json" ${KVZAP_SWEEP_ARGS:---kv-types f16 --engines stock,kvzap-off,kvzap@0.25,kvzap@1,kvzap@0.5,kvzap@0.125 --decode-tokens 16 --decode-reps 2} 2>&1 | tee "/tmp/$N.log" | grep -v "^  depth" | tail -45
