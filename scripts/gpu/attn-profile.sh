#!/usr/bin/env bash
# On the GPU machine, in the repo root: where the decode attention kernel's time goes. Builds the standalone check
# (cuda/kvzap-attn.cu, and .gpu/base/kvzap-attn.cu with its headers beside it when present, for an A/B in the same
# run), prints the decode timings (one launch timed with events, and back to back in a CUDA graph as the decode graph
# runs it), then runs the kernels under Nsight Compute at the lengths of KVZAP_PROFILE_L (default 4096,16384):
# duration, DRAM throughput, occupancy, warp stall reasons. KVZAP_CHECKS=1: every check of the new kernel first.
# KVZAP_VARIANTS: builds with other flags, KVZAP_CTA=1: the CTA-wide decode kernel, each checked and timed after the
# default one. Logs under $OUT. Needs nvcc (and ncu for the profile).
#   bash scripts/gpu/attn-profile.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
ARCH=${KVZAP_CUDA_ARCH:-90}
build() { nvcc -O3 -std=c++17 -arch=sm_$ARCH -lineinfo -Icuda -Inative/kvzap ${3:-} "$1" native/kvzap/kvzap-moves.cpp scripts/gpu/kvzap-attn-check.cpp scripts/gpu/stream-kernel.cu -o "$2" > "$OUT/build-$(basename "$2").log" 2>&1; }
build cuda/kvzap-attn.cu /tmp/attn-new &
[ -f .gpu/base/kvzap-attn.cu ] && build .gpu/base/kvzap-attn.cu /tmp/attn-base &
# KVZAP_VARIANTS="name:-DFLAG=1 name2:-DX": more builds of the tree with other flags, checked and timed after it
for v in ${KVZAP_VARIANTS:-}; do build cuda/kvzap-attn.cu "/tmp/attn-${v%%:*}" "${v#*:}" & done
wait
[ -x /tmp/attn-new ] || { cat "$OUT"/build-*.log; exit 1; }
KVZAP_TIMINGS=$OUT/new.jsonl /tmp/attn-new $([ -z "${KVZAP_CHECKS:-}" ] && echo --time) 2>&1 | tee "$OUT/new.log" | grep -E "FAIL|^PASS: |^decode|copy"
[ -x /tmp/attn-base ] && KVZAP_TIMINGS=$OUT/base.jsonl /tmp/attn-base --time 2>&1 | tee "$OUT/base.log" | grep -E "FAIL|^decode" | sed 's/^/base: /'
# another run's checks and timings under its name: also NAME BINARY [VAR=VALUE...]
also() {
  local n=$1 b=$2; shift 2
  env "$@" KVZAP_TIMINGS="$OUT/$n.jsonl" "$b" $([ -z "${KVZAP_CHECKS:-}" ] && echo --time) 2>&1 | tee "$OUT/$n.log" | grep -E "FAIL|^PASS: |^decode" | sed "s/^/$n: /"
}
for v in ${KVZAP_VARIANTS:-}; do also "${v%%:*}" "/tmp/attn-${v%%:*}"; done
# KVZAP_CTA=1: the CTA-wide decode kernel of the same build too (KVZAP_DECODE_KERNEL=1)
[ -n "${KVZAP_CTA:-}" ] && also cta /tmp/attn-new KVZAP_DECODE_KERNEL=1
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || find / -name ncu -type f -not -path '/proc/*' 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "no ncu"; exit 0; }
# KVZAP_PROFILE_TYPES=f16,q8_0 (default f16); KVZAP_NCU_FULL=1: every section and the source counters, the SASS with
# each instruction's stall samples (ncu-*-source.csv), and the kernels' SASS (sass-*.txt)
FULL=${KVZAP_NCU_FULL:-}
for L in ${KVZAP_PROFILE_L:-4096 16384}; do
  for T in $(echo "${KVZAP_PROFILE_TYPES:-f16}" | tr , ' '); do
  for b in new base; do
    [ -x /tmp/attn-$b ] || continue
    if [ -n "$FULL" ]; then
      KVZAP_TIME_L=$L KVZAP_TIME_TYPES=$T timeout 240 "$NCU" --kernel-name regex:kvzap_attn_decode --launch-skip 8 --launch-count 1 \
        --set full --import-source yes -o "$OUT/ncu-$b-$T-$L" /tmp/attn-$b --time > "$OUT/ncu-$b-$T-$L.log" 2>&1
      "$NCU" -i "$OUT/ncu-$b-$T-$L.ncu-rep" --page details > "$OUT/ncu-$b-$T-$L.txt" 2>&1
      "$NCU" -i "$OUT/ncu-$b-$T-$L.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu-$b-$T-$L-source.csv" 2>&1
    else
      KVZAP_TIME_L=$L KVZAP_TIME_TYPES=$T timeout 120 "$NCU" --kernel-name regex:kvzap_attn --launch-skip 20 --launch-count 2 \
        --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section SchedulerStats \
        --section MemoryWorkloadAnalysis /tmp/attn-$b --time > "$OUT/ncu-$b-$T-$L.txt" 2>&1
    fi
    echo "== ncu $b $T L=$L"
    grep -E "^  [a-z_:<>, 0-9A-Z()]*kvzap_attn|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Grid Size|Registers Per|Block Limit Shared|Warp Cycles Per Issued|No Eligible|Issued Warp|Executed Instructions  |Stall|stall" "$OUT/ncu-$b-$T-$L.txt" | sed 's/  */ /g' | head -60
  done
  done
done
if [ -n "$FULL" ]; then
  for b in new base; do
    [ -x /tmp/attn-$b ] && cuobjdump -sass /tmp/attn-$b 2>/dev/null | awk '/Function : .*decode/{p=1} /Function : /&&!/decode/{p=0} p' > "$OUT/sass-$b.txt"
  done
fi
