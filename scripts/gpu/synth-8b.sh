#!/usr/bin/env bash
# Makes the random-weight model of Llama-3.1-8B's shapes (../shared/tools/synth_gguf.py, Q8_0 weights) once per
# machine, at $KVZAP_8B; a second caller waits for the first. Prints its path.
set -u
MODEL=${KVZAP_8B:-/tmp/models/synth-llama-8b-q8_0.gguf}
mkdir -p "$(dirname "$MODEL")"
exec 7>"$MODEL.lock" && flock 7
if [ ! -f "$MODEL" ]; then
  [ -d .gpu/gguf-py ] || tar -C .gpu -xJf .gpu/gguf-py.tar.xz
  t0=$(date +%s)
  PYTHONUNBUFFERED=1 python3 .gpu/synth_gguf.py --gguf-py .gpu/gguf-py --out "$MODEL.tmp" >&2 && mv "$MODEL.tmp" "$MODEL"
  echo "synthesised $MODEL ($(du -h "$MODEL" | cut -f1)) in $(( $(date +%s) - t0 ))s" >&2
fi
echo "$MODEL"
