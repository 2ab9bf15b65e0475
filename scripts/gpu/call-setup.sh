#!/usr/bin/env bash
# First call of a GPU session (carry .gpu and dist): unpacks node and the runtime, then starts, in sessions of their
# own that outlive the call (the machine keeps them while it stays warm), the stock engine's build and the 8B model.
set -u
KVZAP_BUILDS=none bash scripts/gpu/remote.sh > "$OUT/setup.log" 2>&1
mkdir -p /tmp/bg
setsid nohup env OUT=/tmp/bg KVZAP_BUILDS=stock bash scripts/gpu/remote.sh > /tmp/bg/stock.log 2>&1 < /dev/null &
setsid nohup bash scripts/gpu/synth-8b.sh > /tmp/bg/synth.log 2>&1 < /dev/null &
sleep 2
tail -3 "$OUT/setup.log"
