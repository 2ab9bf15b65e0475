#!/usr/bin/env bash
# The start of a GPU session (carry .gpu and dist): unpacks node and the runtime, and starts the builds of
# KVZAP_START_BUILDS (default: stock; "cuda stock" when no CUDA addon was built here) and the 8B model in sessions of
# their own, kept while the machine stays warm. call-next.sh with KVZAP_WAIT=1 waits for them. With a CUDA addon built
# here this is a short call of its own (.gpu and .gpu-cuda together are more than one call carries).
#   bash scripts/gpu/call-setup.sh
set -u
KVZAP_BUILDS=none bash scripts/gpu/remote.sh > "$OUT/setup.log" 2>&1
mkdir -p /tmp/bg
setsid nohup env OUT=/tmp/bg KVZAP_BUILDS="${KVZAP_START_BUILDS:-stock}" bash scripts/gpu/remote.sh > /tmp/bg/builds.log 2>&1 < /dev/null &
echo $! > /tmp/bg/builds.pid
setsid nohup bash scripts/gpu/synth-8b.sh > /tmp/bg/synth.log 2>&1 < /dev/null &
sleep 2; tail -3 "$OUT/setup.log"
