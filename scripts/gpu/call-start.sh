#!/usr/bin/env bash
# The first, short call of a GPU session whose CUDA addon was built here (carry .gpu and dist; .gpu-cuda goes with
# the next call, the two together being more than one call carries): unpacks node and the runtime, and starts the
# stock engine's build and the 8B model in sessions of their own, kept while the machine stays warm. The next call
# (call-next.sh with KVZAP_WAIT_STOCK=1) waits for them.   bash scripts/gpu/call-start.sh
set -u
KVZAP_BUILDS=none bash scripts/gpu/remote.sh > "$OUT/setup.log" 2>&1
mkdir -p /tmp/bg
setsid nohup env OUT=/tmp/bg KVZAP_BUILDS=stock bash scripts/gpu/remote.sh > /tmp/bg/builds.log 2>&1 < /dev/null &
setsid nohup bash scripts/gpu/synth-8b.sh > /tmp/bg/synth.log 2>&1 < /dev/null &
sleep 2; tail -3 "$OUT/setup.log"
