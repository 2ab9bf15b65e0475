import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { formatTau, memoryTable, speedTable } from "../bench/table.js";
import { parseVariants, VARIANT_HELP } from "../bench/variants.js";
import type { MemoryReport, SpeedReport } from "../bench/report.js";
import { benchMemory, benchSpeed } from "../commands/bench.js";
import type { Model } from "../engine/model.js";
import { intFlag, numberFlag } from "./args.js";
import { defineCommand, type OptionDecls } from "./command.js";
import { MODEL_OPTION, RUNTIME_OPTIONS } from "./options.js";
import { UsageError, UserError, errorMessage } from "../base/errors.js";
import { loadRuntimeModel, resolveRuntime, type Runtime, type RuntimeFlags } from "./runtime.js";
import { defaultOut } from "./bench-out.js";

export { defaultOut };

const INTRO = `Benchmarks: each prints a table and writes its numbers as JSON (--out). Runs share the machine with whatever else
runs on it: the table shows the load average before and after, and speed compares variants run back to back.`;

/** The options of both benchmarks. */
const COMMON = {
  ...MODEL_OPTION,
  ctx: RUNTIME_OPTIONS.ctx,
  threads: RUNTIME_OPTIONS.threads,
  batch: RUNTIME_OPTIONS.batch,
  "gpu-layers": RUNTIME_OPTIONS["gpu-layers"],
  "cache-dir": { ...RUNTIME_OPTIONS["cache-dir"], help: "where downloaded models and user profiles are kept" },
  file: { short: "f", value: "F", help: "the text the prompt is cut from", default: "../shared/corpora/gutenberg-sherlock-holmes.txt" },
  out: { short: "o", value: "FILE", help: "where the JSON goes", default: "bench-<speed|memory>-<model>-<date>.json here" },
  json: { type: "boolean", help: "print the JSON on stdout instead of the table" },
} as const satisfies OptionDecls;

const positiveInt =
  (flag: string, max = Number.MAX_SAFE_INTEGER) =>
  (v: string) =>
    void intFlag(v, flag, 1, max);

export const BENCH_SPEED = defineCommand({
  name: "bench speed",
  usage: ["[MODEL] [options]"],
  description: `${INTRO}

kvzap bench speed — prefill and decode rates of the stock path (the full cache, llama.cpp's own attention) and of
KVzap at τ = -1e9, where every pair is kept, so that both do the same work. Each repetition runs every variant once
in a fresh session (the order rotates per repetition); the table gives the median (min–max) per variant and the
ratio to stock of the two runs of each repetition.`,
  arguments: [["MODEL", "a GGUF path, hf:user/repo:quant or an http(s) URL (or --model)"]],
  groups: [
    {
      options: {
        ...COMMON,
        "prompt-tokens": { value: "N", help: "prompt length", default: "the context minus --decode-tokens", check: positiveInt("prompt-tokens") },
        "decode-tokens": {
          value: "N",
          help: "greedy tokens decoded after the prompt (one fewer when they and the prompt fill the context: the last sampled token needs no room)",
          default: "128",
          check: positiveInt("decode-tokens"),
        },
        reps: { value: "R", help: "repetitions", default: "3", check: positiveInt("reps", 1000) },
        variants: { value: "LIST", help: `comma-separated: ${VARIANT_HELP.trim()}`, default: "stock,kvzap", check: (v: string) => void parseVariants(v) },
        profile: {
          value: "P",
          help: "KVzap profile; without one, random weights of the model's shapes, which at τ = -1e9 cost the same and change nothing",
          default: "the shipped or user profile for the model",
        },
        "no-warmup": { type: "boolean", help: "skip the untimed short run of each variant before the repetitions" },
      },
    },
  ],
});

export const BENCH_MEMORY = defineCommand({
  name: "bench memory",
  usage: ["[MODEL] [options]"],
  description: `${INTRO}

kvzap bench memory — for the full cache, the window and each τ: KV bytes in use after the prompt against the
full-cache equivalent of the same tokens (per layer in the JSON), the compression, how often the next greedy token
matches the full cache's, and the memory really held: the pool's committed bytes against what a full cache of the
context allocates, and the process's resident memory from the OS (peak over the run, and with an empty context).`,
  arguments: [["MODEL", "a GGUF path, hf:user/repo:quant or an http(s) URL (or --model)"]],
  groups: [
    {
      options: {
        ...COMMON,
        "prompt-tokens": { value: "N", help: "prompt length", default: "the context minus --compare-tokens", check: positiveInt("prompt-tokens") },
        taus: { value: "LIST", help: "thresholds", default: "-1e9,-6,-5,-4,-3,1e9", check: (v: string) => void parseTaus(v) },
        window: { value: "N", help: "recent tokens always kept", default: "the profile's", check: (v: string) => void intFlag(v, "window", 0, 1 << 24) },
        "compare-tokens": { value: "N", help: "greedy tokens compared with the full cache's", default: "32", check: positiveInt("compare-tokens") },
        profile: {
          value: "P",
          help: "KVzap profile; without one, random weights: the memory figures are real, the quality numbers mean nothing",
          default: "the shipped or user profile",
        },
      },
    },
  ],
});

function help(): string {
  return `usage: kvzap bench speed [MODEL] [options]
       kvzap bench memory [MODEL] [options]
       kvzap bench sweep MODEL [options]

${INTRO}

sweep runs stock llama.cpp (an unpatched build of the same tag) against KVzap at fixed kept fractions over depths
and KV types, one process per configuration (the GPU benchmark). kvzap bench speed --help, kvzap bench memory --help
and kvzap bench sweep --help list each benchmark's options.`;
}

export const DEFAULT_TAUS = [-1e9, -6, -5, -4, -3, 1e9];

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") {
    process.stdout.write(help() + "\n");
    return sub === undefined ? 2 : 0;
  }
  if (sub === "speed") return speed(rest);
  if (sub === "memory") return memory(rest);
  if (sub === "sweep") return (await import("./bench-sweep.js")).main(rest);
  throw new UsageError(`unknown benchmark '${sub}': the benchmarks are speed, memory and sweep`);
}

type BenchFlags = Pick<RuntimeFlags, "model" | "ctx" | "threads" | "gpu-layers" | "cache-dir" | "batch">;

function runtimeOf(values: BenchFlags, positionals: string[]): { runtime: Runtime; flags: RuntimeFlags } {
  if (positionals.length > 1) throw new UsageError(`one MODEL expected, got ${positionals.length}: ${positionals.join(" ")}`);
  // The KV policy is the benchmark's business, per variant: the runtime itself loads the model for the full cache.
  const flags: RuntimeFlags = {
    model: values.model,
    ctx: values.ctx,
    threads: values.threads,
    "gpu-layers": values["gpu-layers"],
    "cache-dir": values["cache-dir"],
    batch: values.batch,
    kv: "full",
  };
  return { runtime: resolveRuntime(flags, positionals[0]), flags };
}

async function loadModel({
  runtime,
  flags,
}: {
  runtime: Runtime;
  flags: RuntimeFlags;
}): Promise<{ model: Model; contextSize: number; threads: number; batchSize: number }> {
  const model = await loadRuntimeModel(runtime, flags);
  const contextSize = runtime.session.contextSize!;
  // A session never batches more than its context holds.
  return { model, contextSize, threads: runtime.session.threads!, batchSize: Math.min(runtime.session.batchSize ?? 512, contextSize) };
}

async function speed(argv: string[]): Promise<number> {
  const { values, positionals } = BENCH_SPEED.parse(argv);
  if (BENCH_SPEED.printHelpIf(values)) return 0;
  const variants = parseVariants(values.variants ?? "stock,kvzap");
  const decodeTokens = intFlag(values["decode-tokens"], "decode-tokens", 1) ?? 128;
  const reps = intFlag(values.reps, "reps", 1, 1000) ?? 3;
  const promptFlag = intFlag(values["prompt-tokens"], "prompt-tokens", 1);
  const { model, contextSize, threads, batchSize } = await loadModel(runtimeOf(values, positionals));
  try {
    const promptTokens = promptFlag ?? contextSize - decodeTokens;
    if (promptTokens < 1 || promptTokens + decodeTokens > contextSize) {
      throw new UsageError(
        `the prompt (${promptTokens}) and the decoded tokens (${decodeTokens}) must fit in the context (${contextSize}); lower --prompt-tokens or --decode-tokens, or raise --ctx`,
      );
    }
    const report = await benchSpeed({
      model,
      variants,
      contextSize,
      promptTokens,
      decodeTokens,
      reps,
      threads,
      batchSize,
      warmup: !values["no-warmup"],
      profilePath: values.profile,
      textFile: values.file,
      cacheDir: values["cache-dir"],
      onEvent: (e) => {
        if (e.type === "warmup") progress(`warm-up: ${e.variant}`);
        else
          progress(
            `rep ${e.of.rep + 1}/${e.of.reps} ${e.variant}: prefill ${e.run.prefillTokPerSec.toFixed(1)} tok/s, decode ${e.run.decodeTokPerSec.toFixed(1)} tok/s`,
          );
      },
    });
    return await emit(report, values.out ?? defaultOut("speed", model.path), values.json === true, speedTable);
  } finally {
    model.dispose();
  }
}

async function memory(argv: string[]): Promise<number> {
  const { values, positionals } = BENCH_MEMORY.parse(argv);
  if (BENCH_MEMORY.printHelpIf(values)) return 0;
  const taus = values.taus === undefined ? DEFAULT_TAUS : parseTaus(values.taus);
  const window = intFlag(values.window, "window", 0, 1 << 24);
  const compareTokens = intFlag(values["compare-tokens"], "compare-tokens", 1, 1 << 16) ?? 32;
  const promptFlag = intFlag(values["prompt-tokens"], "prompt-tokens", 1);
  const { model, contextSize, threads, batchSize } = await loadModel(runtimeOf(values, positionals));
  try {
    const promptTokens = promptFlag ?? contextSize - compareTokens;
    if (promptTokens < 1 || promptTokens + compareTokens > contextSize) {
      throw new UsageError(
        `the prompt (${promptTokens}) and the compared tokens (${compareTokens}) must fit in the context (${contextSize}); lower --prompt-tokens or --compare-tokens, or raise --ctx`,
      );
    }
    const report = await benchMemory({
      model,
      taus,
      window,
      contextSize,
      promptTokens,
      compareTokens,
      threads,
      batchSize,
      profilePath: values.profile,
      textFile: values.file,
      cacheDir: values["cache-dir"],
      onEvent: (e) => {
        if (e.type === "full") progress("full cache");
        else if (e.type === "window") progress("window");
        else progress(`τ ${formatTau(e.tau)}: ${e.result.compression.toFixed(2)}x, agreement ${e.result.agreement.toFixed(3)}`);
      },
    });
    return await emit(report, values.out ?? defaultOut("memory", model.path), values.json === true, memoryTable);
  } finally {
    model.dispose();
  }
}

export function parseTaus(list: string): number[] {
  const parts = list
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "");
  if (parts.length === 0) throw new UsageError("--taus lists no threshold");
  return parts.map((p) => numberFlag(p, "taus")!);
}

async function emit<R extends SpeedReport | MemoryReport>(report: R, out: string, json: boolean, table: (r: R) => string): Promise<number> {
  const text = JSON.stringify(report, null, 2) + "\n";
  const file = path.resolve(out);
  try {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, text);
  } catch (e) {
    // The numbers are not lost: they still go to stdout.
    process.stdout.write(json ? text : table(report) + "\n");
    throw new UserError(`could not write ${file}: ${errorMessage(e)}`);
  }
  process.stdout.write(json ? text : `${table(report)}\n\nwrote ${file}\n`);
  return 0;
}

function progress(line: string): void {
  process.stderr.write(line + "\n");
}
