#!/usr/bin/env node
// Builds the kvzap addon: prepares the patched llama.cpp source, then configures and compiles native/ with cmake-js.
// CPU by default; CUDA when nvcc and cuBLAS are found or KVZAP_CUDA=1 (KVZAP_CUDA=0 forces CPU).
// --stock: the benchmark's stock engine instead, the same addon against the unpatched llama.cpp of the same tag
// (native/deps/llama.cpp-stock, built into native/build-stock; `kvzap bench sweep --stock-addon` loads it).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { PatchError, listPatches, locateBundle, packageDir, prepareLlamaSource } from "./llama-source.mjs";

const nativeDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const rootDir = path.dirname(nativeDir);
const log = (msg) => console.log(`[kvzap build] ${msg}`);

function which(cmd) {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  return r.status === 0 ? r.stdout.trim() : null;
}

function findCublas(nvcc) {
  const dirs = [];
  if (nvcc) {
    const cudaRoot = path.resolve(path.dirname(execFileSync("readlink", ["-f", nvcc], { encoding: "utf8" }).trim()), "..");
    dirs.push(path.join(cudaRoot, "lib64"), path.join(cudaRoot, "lib"), path.join(cudaRoot, "targets/x86_64-linux/lib"));
  }
  if (process.env.CUDA_PATH) dirs.push(path.join(process.env.CUDA_PATH, "lib64"));
  dirs.push("/usr/lib/x86_64-linux-gnu", "/usr/local/cuda/lib64");
  return dirs.some((d) => existsSync(d) && readdirSync(d).some((f) => f.startsWith("libcublas.so")));
}

function cudaChoice() {
  const env = process.env.KVZAP_CUDA;
  if (env === "0" || env === "OFF" || env === "off") return { cuda: false, why: "KVZAP_CUDA=0" };
  const nvcc = which("nvcc");
  if (env === "1" || env === "ON" || env === "on") return { cuda: true, why: "KVZAP_CUDA=1" };
  if (!nvcc) return { cuda: false, why: "no nvcc on PATH" };
  if (!findCublas(nvcc)) return { cuda: false, why: `nvcc found (${nvcc}) but no cuBLAS library; set KVZAP_CUDA=1 to force` };
  return { cuda: true, why: `nvcc found (${nvcc})` };
}

function cudaArch() {
  if (process.env.KVZAP_CUDA_ARCH) return process.env.KVZAP_CUDA_ARCH;
  const r = spawnSync("nvidia-smi", ["--query-gpu=compute_cap", "--format=csv,noheader"], { encoding: "utf8" });
  const cap = r.status === 0 ? r.stdout.split("\n")[0].trim() : "";
  return /^\d+\.\d+$/.test(cap) ? cap.replace(".", "") : "90";
}

function main() {
  const stock = process.argv.includes("--stock");
  const { bundle, tag } = locateBundle(rootDir);
  const src = path.join(nativeDir, "deps", stock ? "llama.cpp-stock" : "llama.cpp");
  const outDir = path.join(nativeDir, stock ? "build-stock" : "build");
  try {
    prepareLlamaSource({ bundle, tag, dest: src, patches: stock ? [] : listPatches(path.join(nativeDir, "patches")), log });
  } catch (e) {
    if (e instanceof PatchError) {
      console.error(`[kvzap build] ${e.message}`);
      process.exit(1);
    }
    throw e;
  }
  const { cuda, why } = cudaChoice();
  const defines = [`--CDKVZAP_LLAMA_SRC=${src}`, `--CDKVZAP_CUDA=${cuda ? "ON" : "OFF"}`, `--CDKVZAP_STOCK=${stock ? "ON" : "OFF"}`];
  if (cuda) defines.push(`--CDCMAKE_CUDA_ARCHITECTURES=${cudaArch()}`);
  if (process.env.KVZAP_BUILD_TOOLS === "1") defines.push("--CDKVZAP_BUILD_TOOLS=ON");
  log(`${stock ? "stock engine (unpatched llama.cpp " + tag + "), " : ""}backend: ${cuda ? "CUDA" : "CPU"} (${why})`);
  const jobs = process.env.KVZAP_JOBS || String(Math.max(1, os.availableParallelism()));
  const cmakeJs = path.join(packageDir(rootDir, "cmake-js"), "bin", "cmake-js");
  const args = [cmakeJs, "compile", "--directory", nativeDir, "--out", outDir, "--config", "Release", "--parallel", jobs, ...defines];
  if (process.env.KVZAP_GENERATOR) args.push("--generator", process.env.KVZAP_GENERATOR);
  const r = spawnSync(process.execPath, args, { stdio: "inherit", cwd: rootDir });
  if (r.status !== 0) {
    console.error(`[kvzap build] native build failed (exit ${r.status}); see the compiler output above`);
    process.exit(r.status ?? 1);
  }
  log(`built ${path.join(outDir, "Release", "kvzap.node")}`);
}

main();
