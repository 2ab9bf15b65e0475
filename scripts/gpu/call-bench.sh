#!/usr/bin/env bash
# Second call of a GPU session (carry .gpu-cuda and dist), after call-setup.sh: the end-to-end checks of ours while
# the stock engine builds, then (the build done) the greedy traces against stock and `kvzap bench sweep` with f16 KV
# over the 8B model, stock first; the sweep's JSON is rewritten after each configuration, so a cut run keeps its rows.
set -u
KVZAP_BUILDS=none bash scripts/gpu/remote.sh scripts/gpu/check-e2e.sh vram > "$OUT/e2e.log" 2>&1
KVZAP_BUILDS=stock bash scripts/gpu/remote.sh scripts/gpu/check-e2e.sh greedy >> "$OUT/e2e.log" 2>&1
grep -E "PASS|FAIL|greedy tokens|decisions|agree|build " "$OUT/e2e.log" | cut -c1-400
KVZAP_BUILDS=none bash scripts/gpu/remote.sh scripts/gpu/sweep.sh 2>&1 | tail -40
