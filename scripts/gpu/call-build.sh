#!/usr/bin/env bash
# First call of a GPU session when no CUDA addon was built here (carry .gpu and dist; pack.sh put the patched and the
# stock source in .gpu): both builds and the 8B model start in the background (call-setup.sh), the standalone kernel
# checks and SDPA timings run meanwhile, then the builds are waited for and, with KVZAP_SWEEP_ARGS, a first sweep runs
# until the call's limit is near (call-next.sh). KVZAP_START_BUILDS=cuda builds ours alone (about 250 s, against 530
# with stock). KVZAP_ATTN= (empty) leaves the kernel checks out.   bash scripts/gpu/call-build.sh [SECONDS]
set -u
t0=$(date +%s)
KVZAP_START_BUILDS="${KVZAP_START_BUILDS:-cuda stock}" bash scripts/gpu/call-setup.sh
KVZAP_ATTN=${KVZAP_ATTN-1} KVZAP_WAIT=1 bash scripts/gpu/call-next.sh $(( ${1:-585} - ($(date +%s) - t0) ))
