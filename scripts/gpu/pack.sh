#!/usr/bin/env bash
# Packs what a run on the GPU machine needs into .gpu/ (git-ignored, carried by the device tool): node, the
# runtime node_modules, the prepared llama.cpp source, and fixture models. The machine has no node and no registry.
#   scripts/gpu/pack.sh [--testbed]     then carry .gpu (and .gpu-tb) and dist, and run scripts/gpu/remote.sh there
# A CUDA addon built here (native/build-cuda, build-here.sh) travels prebuilt in .gpu-cuda, by a call of its own; the
# patched source still travels in .gpu, for a build there. The testbed model goes to .gpu-tb, to be carried by a call
# of its own (one call carries 64 MiB at most).
set -euo pipefail
cd "$(dirname "$0")/../.."
G=.gpu
mkdir -p "$G"
[ -f "$G/node.xz" ] || xz -T2 -9e -c "$(command -v node)" > "$G/node.xz"
if [ ! -f "$G/nm.tar.xz" ]; then
  tmp=$(mktemp -d)
  node -e "
    const p = require('./package.json'); const deps = { ...p.dependencies };
    delete deps['cmake-js'];
    require('fs').writeFileSync('$tmp/package.json', JSON.stringify({ name: 'kvzap-gpu', private: true, type: 'module', dependencies: deps, config: p.config }));"
  (cd "$tmp" && npm install --omit=optional --omit=dev --ignore-scripts --no-package-lock --silent)
  rm -f "$tmp/node_modules/node-llama-cpp/llama/gitRelease.bundle"
  cp -r node_modules/node-api-headers "$tmp/node_modules/"
  tar -C "$tmp" -cf - node_modules | xz -T2 -6 > "$G/nm.tar.xz"
  rm -rf "$tmp"
fi
# The stock engine's source (npm run build:stock prepares it): the unpatched llama.cpp of the same tag. (The folders
# left out are named from the top: src/models holds the model graphs.)
if [ -d native/deps/llama.cpp-stock ]; then
  # (and the ggml backends a CUDA build never compiles: the call that carries it has little room to spare)
  tar -C native/deps --no-wildcards $(for d in models docs tools examples tests media gguf-py app benches pocs \
    ggml/src/ggml-{cann,openvino,webgpu,et,metal,hexagon,sycl,vulkan,opencl,virtgpu,zdnn,zendnn,musa,hip}; do echo "--exclude=llama.cpp-stock/$d"; done) \
    --exclude=.git -cf - llama.cpp-stock | xz -T2 -6 > "$G/llsrc-stock.tar.xz"
fi
# CUDA addons built here (scripts/gpu/build-here.sh), stripped, each in a folder of its own: with node and the runtime
# one is more than a call carries (64 MiB), so a call of its own brings it (call-carried.sh)
pack_addon() { # pack_addon KIND: native/build-KIND's addon into .gpu-KIND
  local a x=.gpu-$1/kvzap-$1.node.xz
  a=$(find "native/build-$1" -name kvzap.node 2>/dev/null | head -1 || true)
  [ -n "$a" ] || return 0
  mkdir -p ".gpu-$1"
  if [ ! "$x" -nt "$a" ]; then
    strip --strip-unneeded -o "/tmp/kvzap-$1.node" "$a" && xz -T2 -6 -c "/tmp/kvzap-$1.node" > "$x"
  fi
}
pack_addon stock
pack_addon cuda
rm -f "$G/kvzap-cuda.node.xz"
# The patched source as the build prepared it (npm run build:native), without what the addon never builds: with an
# addon built here too, for a build there should that one not load (call-carried.sh)
tar -C native/deps --exclude=.git --exclude=llama.cpp/models --exclude=llama.cpp/docs --exclude=llama.cpp/tools \
  --exclude=llama.cpp/examples --exclude=llama.cpp/tests --exclude=llama.cpp/media --exclude=llama.cpp/gguf-py \
  --exclude=llama.cpp/app --exclude=llama.cpp/benches --exclude=llama.cpp/pocs -cf - llama.cpp | xz -T2 -6 > "$G/llsrc.tar.xz"
rm -f "$G/stories260K.gguf"
# calibration text for timing runs there (the default corpora folder, ../shared/corpora, is laid out from it)
rm -rf "$G/corpora"
tar -C ../shared -cf - corpora/debian-devils-dictionary.txt corpora/gutenberg-sherlock-holmes.txt | xz -T2 -6 > "$G/corpora.tar.xz"
# the testbed model (the end-to-end checks) travels with node: then the CUDA addon comes in the next call, alone
rm -f "$G/testbed-28M-v0-q8_0.gguf"
if [ "${1:-}" = "--testbed" ]; then cp -f ../shared/models/testbed-28M-v0-q8_0.gguf "$G/"; fi
# the generator of large random-weight models (Llama-8B shapes) for timings there, with llama.cpp's gguf package
rm -rf "$G/gguf-py" && tar -C native/deps/llama.cpp -cf - gguf-py/gguf | xz -T2 -6 > "$G/gguf-py.tar.xz" && cp ../shared/tools/synth_gguf.py "$G/"
npx tsc -p tsconfig.build.json --sourceMap false && find dist -name "*.map" -delete
# the tests' exact F32 copy of a quantized model (test/helpers/dequantize.ts), to make one there: 112 MB do not travel
rm -rf "$G/dq" && npx tsc test/helpers/dequantize.ts --outDir "$G/dq" --module nodenext --moduleResolution nodenext --target es2022 --skipLibCheck
du -ch "$G"/* dist | tail -1
for d in .gpu-cuda .gpu-stock .gpu-tb; do [ -d $d ] && du -ch $d | tail -1; done
