#!/usr/bin/env bash
# After remote.sh put the addons in place: loads each (node's dlopen) and says which load; exit 1 if ours does not.
#   bash scripts/gpu/remote.sh scripts/gpu/check-load.sh
set -u
rc=0
for a in "${KVZAP_CUDA_ADDON:-}" "${KVZAP_STOCK_ADDON:-}"; do
  [ -n "$a" ] || continue
  if node -e "process.dlopen({ exports: {} }, process.argv[1])" "$a" 2> /tmp/load.err; then echo "loads: $a"; else
    echo "does not load: $a: $(tail -1 /tmp/load.err)"; [ "$a" = "${KVZAP_CUDA_ADDON:-}" ] && rc=1
  fi
done
[ -n "${KVZAP_CUDA_ADDON:-}" ] || { echo "no CUDA addon of ours here"; rc=1; }
exit $rc
