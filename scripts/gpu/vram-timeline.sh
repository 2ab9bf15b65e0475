#!/usr/bin/env bash
# Where a session's device memory goes, after remote.sh put the addons in place: for each engine, one sweep case on
# the 8B model (synth-8b.sh) at DEPTH with llama.cpp's log on (KVZAP_VERBOSE=1), while nvidia-smi samples the used
# memory every 20 ms; prints each log line that allocates or marks a phase with the used memory at that moment (MiB)
# and every change of 32 MiB or more, then the peak. The samples carry nvidia-smi's own times (its output reaches a
# pipe in bursts). ENV ("NAME=VALUE ...") runs each engine again under those variables (as NAME-env).
#   bash scripts/gpu/vram-timeline.sh [ENGINES] [DEPTH] [KV_TYPE] [ENV]
#   bash scripts/gpu/vram-timeline.sh "kvzap-off kvzap@0.25" 16384 f16 "CUBLAS_WORKSPACE_CONFIG=:0:0"
set -u
MODEL=$(bash scripts/gpu/synth-8b.sh) || exit 1
ENGINES=${1:-kvzap-off kvzap@0.25}
DEPTH=${2:-16384}
KV=${3:-f16}
EXTRA=${4:-}
P=$OUT/vram; mkdir -p "$P"
stamp() { while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%N)" "$l"; done; }
one() { # one NAME ENGINE [VAR=VALUE ...]
  local name=$1 engine=$2; shift 2
  # "YYYY/MM/DD hh:mm:ss.mmm, MiB" (local time, as mktime takes it) to "SECONDS MiB"
  nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 20 |
    awk -F', ' '{ split($1, d, /[\/ :]/); s = d[6] + 0
      printf "%.3f %s\n", mktime(d[1] " " d[2] " " d[3] " " d[4] " " d[5] " " int(s)) + s - int(s), $2; fflush() }' > "$P/$name.mem" &
  local smi=$!
  sleep 0.5
  env "$@" KVZAP_VERBOSE=1 KVZAP_ADDON=$KVZAP_CUDA_ADDON node bin/kvzap.js bench sweep "$MODEL" --stock-addon none \
    --file .gpu/corpora/gutenberg-sherlock-holmes.txt --out "$P/$name.json" --kv-types "$KV" --depths "$DEPTH" \
    --engines "$engine" --decode-tokens 16 --decode-reps 1 2>&1 | stamp > "$P/$name.log"
  sleep 3 # nvidia-smi's buffer (about 2.7 s of samples) reaches the file before it stops
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  echo "=== $name ($KV, depth $DEPTH)"
  # each interesting line with the last sample before it
  sort -n -s -k1,1 "$P/$name.mem" "$P/$name.log" | awk '
    !t0 { t0 = $1 }
    NF == 2 && $2 ~ /^[0-9]+$/ {
      mem = $2; if (mem > peak) peak = mem
      if (mem - shown >= 32 || shown - mem >= 32) { printf "%6s MiB  at %.2f s\n", mem, $1 - t0; shown = mem }
      next }
    /buffer size|KVzap memory|model loaded|session made|prefill|decode|freed|graph_reserve|CUDA0|pool/ {
      t = $1; $1 = ""; printf "%6s MiB  at %.2f s %s\n", mem, t - t0, substr($0, 1, 160) }
    END { printf "peak %s MiB\n", peak }'
}
for e in $ENGINES; do
  one "$(echo "$e" | tr '@' '-')" "$e"
  # shellcheck disable=SC2086
  [ -n "$EXTRA" ] && one "$(echo "$e" | tr '@' '-')-env" "$e" $EXTRA
done
