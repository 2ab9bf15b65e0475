// `kvzap bench sweep`: stock llama.cpp against KVzap over engines × kept fractions × depths × KV types, one process
// per configuration, one table and one JSON report.
import { mkdir, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promptLength, type SweepCase, type SweepEngine, type SweepSettings } from "../bench/sweep.js";
import { sweepTable } from "../bench/sweep-table.js";
import { runSweep, sweepWorker } from "../commands/sweep.js";
import type { KvElementType } from "../engine/kv.js";
import { UsageError, UserError, errorMessage } from "../base/errors.js";
import { intFlag } from "./args.js";
import { defaultOut } from "./bench-out.js";
import { defineCommand } from "./command.js";
import { resolveModelArg } from "./model-arg.js";
import { MODEL_OPTION, RUNTIME_OPTIONS } from "./options.js";
import { resolveSetting } from "../settings/resolve.js";

const DEFAULT_ENGINES = "stock,kvzap-off,kvzap@1,kvzap@0.5,kvzap@0.25,kvzap@0.125";
const DEFAULT_DEPTHS = "4096,16384,65536,131072";
const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const DEFAULT_STOCK_ADDON = path.join(projectRoot, "native", "build-stock", "Release", "kvzap.node");

export const BENCH_SWEEP = defineCommand({
  name: "bench sweep",
  usage: ["MODEL [options]"],
  description: `kvzap bench sweep — stock llama.cpp (the same addon built against the unpatched llama.cpp of the same tag:
npm run build:stock), ours with KVzap off (the full cache), and KVzap keeping fixed fractions of every head (seeded
random choice after the surrogate ran, so the kept share is exact), at several context depths and KV types: prefill
and decode tok/s (medians), the KV memory held, and the device's peak memory from its driver. Each configuration runs
in its own process, depths in increasing order; each depth is a fresh session whose prompt fills the context but for
the decoded tokens. The table gives every ratio to stock at the same depth and KV type; the JSON has every run.`,
  arguments: [["MODEL", "a GGUF path, hf:user/repo:quant or an http(s) URL"]],
  groups: [
    {
      options: {
        engines: {
          value: "LIST",
          help: "stock, kvzap-off, kvzap@KEEP (a kept fraction in (0, 1])",
          default: DEFAULT_ENGINES,
          check: (v: string) => void parseEngines(v),
        },
        depths: { value: "LIST", help: "context positions per run", default: DEFAULT_DEPTHS, check: (v: string) => void parseDepths(v) },
        "kv-types": { value: "LIST", help: "KV element types: f16, q8_0", default: "f16,q8_0", check: (v: string) => void parseKvTypes(v) },
        "stock-addon": { value: "PATH", help: "the stock engine's addon", default: "native/build-stock/Release/kvzap.node" },
        "decode-tokens": {
          value: "N",
          help: "greedy tokens per decode segment",
          default: "32",
          check: (v: string) => void intFlag(v, "decode-tokens", 1, 4096),
        },
        "decode-reps": { value: "R", help: "decode segments after each prefill", default: "3", check: (v: string) => void intFlag(v, "decode-reps", 1, 100) },
        "decode-warmup": {
          value: "N",
          help: "greedy tokens decoded after each prefill before the timed segments, untimed (graph capture, clocks)",
          default: "8",
          check: (v: string) => void intFlag(v, "decode-warmup", 0, 4096),
        },
        "prefill-reps": {
          value: "R",
          help: "fresh sessions (prefills) per depth",
          default: "1",
          check: (v: string) => void intFlag(v, "prefill-reps", 1, 100),
        },
        batch: { ...RUNTIME_OPTIONS.batch, default: "512 (batch and ubatch, for every engine)" },
        threads: RUNTIME_OPTIONS.threads,
        profile: { value: "P", help: "KVzap profile whose surrogate runs", default: "the shipped or user profile, else random weights of the model's shapes" },
        file: { short: "f", value: "F", help: "the text the prompt is cut from", default: "../shared/corpora/gutenberg-sherlock-holmes.txt" },
        out: { short: "o", value: "FILE", help: "where the JSON goes", default: "bench-sweep-<model>-<date>.json here" },
        json: { type: "boolean", help: "print the JSON on stdout instead of the table" },
        "cache-dir": RUNTIME_OPTIONS["cache-dir"],
        model: MODEL_OPTION.model,
      },
    },
    {
      title: "one configuration (what the sweep runs in each process)",
      options: {
        case: { value: "ENGINE:KEEP:TYPE", help: "run only this configuration in this process" },
        "worker-out": { value: "FILE", help: "where that configuration's rows go (JSON)" },
      },
    },
  ],
});

export function parseEngines(list: string): { engine: SweepEngine; keep: number }[] {
  const out = items(list, "engines").map((s) => {
    if (s === "stock" || s === "kvzap-off") return { engine: s as SweepEngine, keep: 1 };
    const m = /^kvzap@(.+)$/.exec(s);
    const keep = m ? Number(m[1]) : NaN;
    if (!m || !Number.isFinite(keep) || keep <= 0 || keep > 1)
      throw new UsageError(`--engines: '${s}' is not stock, kvzap-off or kvzap@KEEP with KEEP in (0, 1]`);
    return { engine: "kvzap" as SweepEngine, keep };
  });
  const names = out.map((e) => `${e.engine}@${e.keep}`);
  if (new Set(names).size !== names.length) throw new UsageError("--engines names an engine twice");
  return out;
}

export function parseDepths(list: string): number[] {
  const d = items(list, "depths").map((s) => intFlag(s, "depths", 256, 1 << 24)!);
  return [...new Set(d)].sort((a, b) => a - b);
}

export function parseKvTypes(list: string): KvElementType[] {
  return items(list, "kv-types").map((s) => {
    if (s !== "f16" && s !== "q8_0") throw new UsageError(`--kv-types: '${s}' is not f16 or q8_0`);
    return s;
  });
}

function items(list: string, flag: string): string[] {
  const parts = list
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "");
  if (parts.length === 0) throw new UsageError(`--${flag} lists nothing`);
  return parts;
}

function parseCase(spec: string): SweepCase {
  const [engine, keep, kvType] = spec.split(":");
  const [e] = parseEngines(engine === "kvzap" ? `kvzap@${keep}` : engine);
  const [t] = parseKvTypes(kvType ?? "");
  return { engine: e.engine, keep: e.keep, kvType: t };
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = BENCH_SWEEP.parse(argv);
  if (BENCH_SWEEP.printHelpIf(values)) return 0;
  if (positionals.length > 1) throw new UsageError(`one MODEL expected, got ${positionals.length}: ${positionals.join(" ")}`);
  const spec = positionals[0] ?? values.model;
  if (!spec) throw new UsageError("give the model: kvzap bench sweep MODEL");
  const decodeTokens = intFlag(values["decode-tokens"], "decode-tokens", 1, 4096) ?? 32;
  const decodeReps = intFlag(values["decode-reps"], "decode-reps", 1, 100) ?? 3;
  const decodeWarmup = intFlag(values["decode-warmup"], "decode-warmup", 0, 4096) ?? 8;
  const batch = intFlag(values.batch, "batch", 1, 1 << 20) ?? 512;
  const settings: SweepSettings = {
    depths: parseDepths(values.depths ?? DEFAULT_DEPTHS),
    decodeTokens,
    decodeReps,
    decodeWarmup,
    prefillReps: intFlag(values["prefill-reps"], "prefill-reps", 1, 100) ?? 1,
    threads: resolveSetting("threads", values.threads).value,
    batchSize: batch,
  };
  const smallest = settings.depths[0];
  if (promptLength(smallest, settings) < 1)
    throw new UsageError(`depth ${smallest} leaves no room for a prompt before ${decodeWarmup} warm-up and ${decodeReps} × ${decodeTokens} decoded tokens`);
  const modelFile = await resolveModelArg(spec, values["cache-dir"]);

  if (values.case !== undefined) {
    if (!values["worker-out"]) throw new UsageError("--case needs --worker-out FILE");
    const result = await sweepWorker({
      modelFile,
      case: parseCase(values.case),
      settings,
      textFile: values.file,
      profilePath: values.profile,
      cacheDir: values["cache-dir"],
      onEvent: (e) => {
        if (e.type === "phase") progress(`  ${e.what} in ${e.seconds.toFixed(1)} s`);
        else if (e.type === "prefill-progress") progress(`  depth ${e.depth}: ${e.done} of ${e.total} prompt tokens in ${e.seconds.toFixed(1)} s`);
        else if (e.type === "prefill") {
          const host = e.hostMsPerToken === null ? "" : ` (the KV memory's host work ${e.hostMsPerToken.toFixed(4)} ms/tok)`;
          progress(`  depth ${e.depth}: prefill ${e.tps.toFixed(1)} tok/s${host}`);
        } else if (e.type === "decode") progress(`  depth ${e.depth}: decode ${e.tps.toFixed(1)} tok/s`);
      },
    });
    await writeFile(values["worker-out"], JSON.stringify(result));
    return 0;
  }

  const engines = parseEngines(values.engines ?? DEFAULT_ENGINES);
  const kvTypes = parseKvTypes(values["kv-types"] ?? "f16,q8_0");
  const stockAddon = path.resolve(values["stock-addon"] ?? DEFAULT_STOCK_ADDON);
  if (engines.some((e) => e.engine === "stock") && !existsSync(stockAddon)) {
    throw new UserError(`the stock engine's addon is missing (${stockAddon}): build it with npm run build:stock, or leave stock out of --engines`);
  }
  const cases: SweepCase[] = kvTypes.flatMap((kvType) => engines.map((e) => ({ ...e, kvType })));
  const passOn = (name: string, v: string | undefined) => (v === undefined ? [] : [`--${name}`, v]);
  const common = [
    modelFile,
    "--depths",
    settings.depths.join(","),
    "--decode-tokens",
    String(decodeTokens),
    "--decode-reps",
    String(decodeReps),
    "--decode-warmup",
    String(decodeWarmup),
    "--prefill-reps",
    String(settings.prefillReps),
    "--batch",
    String(batch),
    ...passOn("threads", values.threads),
    ...passOn("profile", values.profile),
    ...passOn("file", values.file),
    ...passOn("cache-dir", values["cache-dir"]),
  ];
  const entry = path.join(projectRoot, "bin", "kvzap.js");
  const out = path.resolve(values.out ?? defaultOut("sweep", modelFile));
  const { report, failures } = await runSweep({
    modelFile,
    stockAddon: engines.some((e) => e.engine === "stock") ? stockAddon : null,
    cases,
    settings,
    textFile: values.file,
    profilePath: values.profile,
    workerArgs: (c) => [entry, "bench", "sweep", ...common, "--case", `${c.engine}:${c.keep}:${c.kvType}`],
    command: ["kvzap", "bench", "sweep", ...argv].join(" "),
    onLine: progress,
    onPartial: async (partial) => {
      if (!partial.report) return;
      await mkdir(path.dirname(out), { recursive: true });
      await writeFile(out, JSON.stringify({ ...partial.report, failures: partial.failures, partial: true }, null, 2) + "\n");
    },
  });
  for (const f of failures) progress(`failed: ${f.case}: ${f.message}`);
  if (!report) throw new UserError("no configuration of the sweep completed");
  const text = JSON.stringify({ ...report, failures }, null, 2) + "\n";
  try {
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, text);
  } catch (e) {
    process.stdout.write(values.json ? text : sweepTable(report) + "\n");
    throw new UserError(`could not write ${out}: ${errorMessage(e)}`);
  }
  process.stdout.write(values.json ? text : `${sweepTable(report)}\n\nwrote ${out}\n`);
  return failures.length > 0 ? 1 : 0;
}

function progress(line: string): void {
  process.stderr.write(line + "\n");
}
