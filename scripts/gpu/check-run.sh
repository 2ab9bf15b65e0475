#!/usr/bin/env bash
# Checks for the foundation on the GPU machine: the same greedy `kvzap run` on the CUDA build and the CPU build.
set -u
K="node bin/kvzap.js"
for m in .gpu/stories260K.gguf .gpu/testbed-28M-v0-q8_0.gguf; do
  [ -f "$m" ] || continue
  echo "== $m"
  KVZAP_ADDON=$KVZAP_CUDA_ADDON $K info "$m" --ctx 4096
  for addon in $KVZAP_CUDA_ADDON $KVZAP_CPU_ADDON; do
    echo "-- KVZAP_ADDON=$addon kvzap run $m --prompt 'Once upon a time' --max-tokens 40 --temp 0"
    KVZAP_ADDON=$addon $K run "$m" --prompt "Once upon a time" --max-tokens 40 --temp 0 --kv full
    KVZAP_ADDON=$addon $K run "$m" --prompt "Once upon a time" --max-tokens 40 --temp 0 --kv full --json > "$OUT/run-$(basename $m)-$(basename $(dirname $addon)).json"
  done
done
node -e "
const fs = require('fs');
for (const f of fs.readdirSync(process.env.OUT).filter((f) => f.endsWith('.json'))) {
  const j = JSON.parse(fs.readFileSync(process.env.OUT + '/' + f, 'utf8'));
  console.log(f, 'tokens', j.tokens.length, 'prompt tok/s', j.stats.promptTokensPerSecond, 'decode tok/s', j.stats.decodeTokensPerSecond, 'kv', JSON.stringify(j.stats.kv));
}"
KVZAP_ADDON=$KVZAP_CUDA_ADDON node -e "
const a = require(process.env.KVZAP_ADDON); const s = a.systemInfo();
console.log('backend', s.backend, 'devices', JSON.stringify(s.devices.map((d) => d.description)));"
