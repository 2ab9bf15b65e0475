#!/usr/bin/env bash
# Calibration on the GPU machine, after remote.sh built the CUDA addon (pack.sh --testbed): the CUDA oracle and MLP
# trainer against their CPU twins, then `kvzap calibrate` timings with --device cuda and --device cpu. Logs under $OUT.
set -u
export KVZAP_ADDON=$KVZAP_CUDA_ADDON
TB=.gpu/testbed-28M-v0-q8_0.gguf
cal() { # cal NAME ARGS...: a timed calibrate run, its summary and report kept
  local name=$1; shift
  echo "=== kvzap calibrate $TB $* ($name)"
  /usr/bin/time -f "wall %e s, max RSS %M KiB" node bin/kvzap.js calibrate "$TB" --target 3x --prompts 16 --check --out "$OUT/$name" "$@" 2> "$OUT/$name.stderr" | tail -20
  tail -1 "$OUT/$name.stderr"
}
cal cal-mlp-cuda --kind mlp --device cuda
LARGE=
if [ -f .gpu/synth_gguf.py ]; then  # 2 layers of Llama-3.1-8B's shapes, random weights: oracle timings at a real size
  python3 -c "import yaml" 2>/dev/null || { mkdir -p /tmp/pystub && echo "def safe_load(*a, **k): return {}" > /tmp/pystub/yaml.py; export PYTHONPATH=/tmp/pystub; }
  python3 .gpu/synth_gguf.py --gguf-py .gpu/gguf-py --out /tmp/llama8b-2l.gguf --layers 2 --vocab 32000 --ctx 8192 > "$OUT/synth.log" 2>&1 && LARGE=/tmp/llama8b-2l.gguf
fi
echo "=== CUDA against CPU: oracle and MLP training"
node scripts/gpu/check-calibration.mjs .gpu/stories260K.gguf "$TB" .gpu/corpora/gutenberg-sherlock-holmes.txt "$OUT/cal-mlp-cuda.cache" $LARGE
cal cal-linear-cuda --kind linear --device cuda
cal cal-linear-cpu --kind linear --device cpu
rm -rf "$OUT"/*.cache
