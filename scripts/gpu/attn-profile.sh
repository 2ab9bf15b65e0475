#!/usr/bin/env bash
# On the GPU machine, in the repo root: where the decode attention kernel's time goes. Builds the standalone check
# (cuda/kvzap-attn.cu, and .gpu/kvzap-attn-base.cu when present, for an A/B in the same run), prints the decode timings
# (one launch timed with events, and back to back in a CUDA graph as the decode graph runs it), then runs the kernels
# under Nsight Compute at the lengths of KVZAP_PROFILE_L (default 4096,16384; f16): duration, DRAM throughput,
# occupancy, warp stall reasons. KVZAP_CHECKS=1: every check of the new kernel first. The warp-wise decode kernel
# (KVZAP_DECODE_KERNEL=2) is checked and timed after the default one. Logs under $OUT. Needs nvcc (and ncu for the
# profile).
#   bash scripts/gpu/attn-profile.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
ARCH=${KVZAP_CUDA_ARCH:-90}
build() { nvcc -O3 -std=c++17 -arch=sm_$ARCH -lineinfo -Icuda -Inative/kvzap "$1" native/kvzap/kvzap-moves.cpp scripts/gpu/kvzap-attn-check.cpp scripts/gpu/stream-kernel.cu -o "$2" > "$OUT/build-$(basename "$2").log" 2>&1; }
build cuda/kvzap-attn.cu /tmp/attn-new &
[ -f .gpu/kvzap-attn-base.cu ] && build .gpu/kvzap-attn-base.cu /tmp/attn-base &
wait
[ -x /tmp/attn-new ] || { cat "$OUT"/build-*.log; exit 1; }
KVZAP_TIMINGS=$OUT/new.jsonl /tmp/attn-new $([ -z "${KVZAP_CHECKS:-}" ] && echo --time) 2>&1 | tee "$OUT/new.log" | grep -E "FAIL|^PASS: |^decode|copy"
[ -x /tmp/attn-base ] && KVZAP_TIMINGS=$OUT/base.jsonl /tmp/attn-base --time 2>&1 | tee "$OUT/base.log" | grep -E "FAIL|^decode" | sed 's/^/base: /'
# the warp-wise decode kernel of the same build (KVZAP_DECODE_KERNEL=2)
KVZAP_DECODE_KERNEL=2 KVZAP_TIMINGS=$OUT/warp.jsonl /tmp/attn-new $([ -z "${KVZAP_CHECKS:-}" ] && echo --time) 2>&1 | tee "$OUT/warp.log" | grep -E "FAIL|^PASS: |^decode" | sed 's/^/warp: /'
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || find / -name ncu -type f -not -path '/proc/*' 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "no ncu"; exit 0; }
for L in ${KVZAP_PROFILE_L:-4096 16384}; do
  for b in new base; do
    [ -x /tmp/attn-$b ] || continue
    KVZAP_TIME_L=$L KVZAP_TIME_TYPES=f16 timeout 120 "$NCU" --kernel-name regex:kvzap_attn --launch-skip 20 --launch-count 2 \
      --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section SchedulerStats \
      --section MemoryWorkloadAnalysis /tmp/attn-$b --time > "$OUT/ncu-$b-$L.txt" 2>&1
    echo "== ncu $b L=$L"
    grep -E "^  [a-z_:<>, 0-9A-Z()]*kvzap_attn|Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Grid Size|Registers Per|Block Limit Shared|Warp Cycles Per Issued|No Eligible|Issued Warp" "$OUT/ncu-$b-$L.txt" | sed 's/  */ /g' | head -40
  done
done
