import path from "node:path";
import { requireKvzapSupport } from "../profiles/attention.js";
import { readModelSummary } from "../engine/gguf.js";
import { Model } from "../engine/model.js";
import { DEFAULT_WINDOW } from "../engine/kv.js";
import { requireModel, resolveSetting } from "../settings/resolve.js";
import { defaultFillerPath } from "../eval/filler.js";
import { parsePolicies, parseTargets } from "../eval/policies.js";
import type { PrefillMode } from "../eval/runs.js";
import { parseTaskKinds, TASK_KINDS, type NeedleFormat } from "../eval/tasks.js";
import { readTasksFile } from "../eval/tasks-file.js";
import { intFlag, numberFlag } from "./args.js";
import { defineCommand, oneOf } from "./command.js";
import { EXIT } from "./exit-codes.js";
import { MODEL_OPTION, RUNTIME_OPTIONS } from "./options.js";
import { StopSignals } from "../base/signals.js";
import { UsageError } from "../base/errors.js";
import { resolveKv } from "./kv-args.js";
import { resolveModelArg } from "./model-arg.js";
import { ProgressLine } from "../base/progress.js";

const positiveList = (flag: string) => (v: string) => {
  for (const [i, x] of v.split(",").entries()) intFlag(x.trim(), `${flag}[${i}]`, 1);
};

export const EVAL = defineCommand({
  name: "eval",
  usage: ["[MODEL] --out DIR (--tasks LIST | --tasks-file F.jsonl | --text FILE) [options]"],
  description: `Quality against compression: every policy on the same prompts, at matched compressions. Rows are appended to
DIR/rows.jsonl as they are made, so a stopped run resumes; DIR also gets eval.json (tasks with promptSha256, the
summary and the rows), eval.csv, tasks.jsonl and SVG plots of the metric against compression per policy.`,
  arguments: [["MODEL", "a GGUF path, hf:user/repo:quant or an http(s) URL (or --model; default: the configured model)"]],
  groups: [
    {
      options: {
        ...MODEL_OPTION,
        out: { short: "o", value: "DIR", help: "where rows, tables and plots go (required)" },
        json: { type: "boolean", help: "print the summary as JSON instead of the table and chart" },
      },
    },
    {
      title: "What to measure (one of):",
      options: {
        tasks: { value: "LIST", help: `synthetic RULER-style tasks: ${TASK_KINDS.join(", ")}, or all`, check: (v: string) => void parseTaskKinds(v) },
        "tasks-file": { value: "F", help: "JSONL lines {id, prompt, answers: [..], maxNewTokens?, answerPrefix?, metric?: all|part}" },
        text: {
          value: "FILE",
          help: "held-out text: perplexity, KL to the full cache and top-1 agreement over a teacher-forced continuation (eviction runs while it is decoded)",
        },
      },
    },
    {
      title: "Tasks and text:",
      options: {
        lengths: { value: "LIST", help: "prompt lengths in tokens", default: "1024; text: 4096", check: positiveList("lengths") },
        samples: {
          value: "N",
          help: "tasks per kind and length, or text segments per length",
          default: "5; text: 2",
          check: (v: string) => void intFlag(v, "samples", 1, 100_000),
        },
        seed: { value: "S", help: "task generation and random eviction seed", default: "0", check: (v: string) => void intFlag(v, "seed", 0, 0xffffffff) },
        filler: { value: "FILE", help: "filler text of the generated tasks", default: "../shared/corpora/gutenberg-sherlock-holmes.txt" },
        "needle-format": {
          value: "ruler|kv",
          help: 'needles as RULER\'s sentences with 7-digit numbers, or as bare "key: K value: V" lines with 5-character codes, completed from "key: K value:"',
          default: "ruler",
          check: oneOf("needle-format", ["ruler", "kv"]),
        },
        template: {
          value: "auto|chat|plain",
          help: "the model's chat template (auto: when it has one) or plain completion",
          default: "auto",
          check: oneOf("template", ["auto", "chat", "plain"]),
        },
        continuation: {
          value: "N",
          help: "text: teacher-forced tokens at the end of each segment",
          default: "512",
          check: (v: string) => void intFlag(v, "continuation", 1, 1 << 20),
        },
      },
    },
    {
      title: "Policies:",
      options: {
        policies: {
          value: "LIST",
          help: "full, kvzap, window (StreamingLLM: 4 sinks + window), random, oracle (KVzip+ scores of the prompt, an upper reference)",
          default: "full,kvzap,window,random",
          check: (v: string) => void parsePolicies(v),
        },
        targets: { value: "LIST", help: "compressions in KV pairs, e.g. 1.5,2,3,4,6", default: "2,3,4", check: (v: string) => void parseTargets(v) },
        taus: { value: "LIST", help: "KVzap at these τ instead; the baselines match the compression KVzap reached on each prompt" },
        "tau-from": {
          value: "prompt|table",
          help: "KVzap's τ for a target: from the surrogate's scores of each prompt (exact compression) or from the profile's τ table",
          default: "prompt",
          check: oneOf("tau-from", ["prompt", "table"]),
        },
        profile: {
          value: "PATH",
          help: "KVzap profile (none: kvzap is skipped and the baselines run at the targets)",
          default: "the shipped or user profile that matches the model",
        },
        window: {
          value: "N",
          help: "KVzap's and random eviction's recent window",
          default: "the profile's, else 128",
          check: (v: string) => void intFlag(v, "window", 0, 1 << 20),
        },
        prefill: {
          value: "LIST",
          help: "product (the prompt in --batch ubatches, later ones attending to an already evicted cache) and/or paper (the whole prompt in one pass, eviction after it)",
          default: "product,paper",
        },
        batch: { ...RUNTIME_OPTIONS.batch, help: "the product's prompt batch" },
      },
    },
    {
      title: "Other:",
      options: { threads: RUNTIME_OPTIONS.threads, "gpu-layers": RUNTIME_OPTIONS["gpu-layers"], "cache-dir": RUNTIME_OPTIONS["cache-dir"] },
    },
  ],
  notes: "Exit status: 0 done, 1 bad input or failure, 2 usage error, 130 stopped (the rows made so far are kept; run again to resume).",
});

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = EVAL.parse(argv);
  if (EVAL.printHelpIf(values)) return 0;
  if (positionals.length > 1) throw new UsageError(`one MODEL expected, got ${positionals.length}: ${positionals.join(" ")}`);
  if (positionals.length === 1 && values.model !== undefined) throw new UsageError("give the model once: as MODEL or as --model");
  const sources = [values.tasks, values["tasks-file"], values.text].filter((v) => v !== undefined).length;
  if (sources !== 1) throw new UsageError("give exactly one of --tasks LIST, --tasks-file F.jsonl or --text FILE");
  if (!values.out) throw new UsageError("--out DIR is required (rows, tables and plots go there)");
  const isText = values.text !== undefined;
  const kinds = values.tasks !== undefined ? parseTaskKinds(values.tasks) : [];
  if (values.tasks !== undefined && kinds.length === 0) throw new UsageError("--tasks is empty");
  const lengths = (values.lengths ?? (isText ? "4096" : "1024")).split(",").map((s, i) => intFlag(s.trim(), `lengths[${i}]`, 64, 1 << 20)!);
  const samples = intFlag(values.samples, "samples", 1, 100_000) ?? (isText ? 2 : 5);
  const seed = intFlag(values.seed, "seed", 0, 0xffffffff) ?? 0;
  const template = (values.template ?? "auto") as "auto" | "chat" | "plain";
  if (!["auto", "chat", "plain"].includes(template)) throw new UsageError(`--template must be auto, chat or plain, got '${values.template}'`);
  const needleFormat = (values["needle-format"] ?? "ruler") as NeedleFormat;
  if (needleFormat !== "ruler" && needleFormat !== "kv") throw new UsageError(`--needle-format must be ruler or kv, got '${values["needle-format"]}'`);
  const continuation = intFlag(values.continuation, "continuation", 1, 1 << 20) ?? 512;
  const policies = parsePolicies(values.policies ?? "full,kvzap,window,random");
  const targets = parseTargets(values.targets ?? "2,3,4");
  const taus = values.taus === undefined ? undefined : values.taus.split(",").map((s, i) => numberFlag(s.trim(), `taus[${i}]`)!);
  const tauFrom = (values["tau-from"] ?? "prompt") as "prompt" | "table";
  if (!["prompt", "table"].includes(tauFrom)) throw new UsageError(`--tau-from must be prompt or table, got '${values["tau-from"]}'`);
  const modes = (values.prefill ?? "product,paper").split(",").map((s) => s.trim()) as PrefillMode[];
  if (modes.length === 0 || modes.some((m) => m !== "product" && m !== "paper"))
    throw new UsageError(`--prefill must list product and/or paper, got '${values.prefill}'`);
  const batch = intFlag(values.batch, "batch", 1, 1 << 20) ?? 512;
  const windowFlag = intFlag(values.window, "window", 0, 1 << 20);
  const threads = resolveSetting("threads", values.threads).value;
  const gpuLayers = resolveSetting("gpuLayers", values["gpu-layers"]).value;

  const file = await resolveModelArg(requireModel(positionals[0] ?? values.model), values["cache-dir"]);
  const summary = await readModelSummary(file);
  if (policies.some((p) => p !== "full")) await requireKvzapSupport(file, "window");
  const kv =
    policies.includes("kvzap") || values.profile !== undefined
      ? await resolveKv({ profile: values.profile }, file, { contextSize: 4096, fullBytesPerToken: summary.kvBytesPerToken.f16 }, values["cache-dir"])
      : { policy: "full" as const };
  const profile = kv.policy === "kvzap" ? kv.profile : undefined;
  const window = windowFlag ?? profile?.manifest.window ?? DEFAULT_WINDOW;
  const tasksFile = values["tasks-file"] !== undefined ? await readTasksFile(values["tasks-file"]) : undefined;

  const model = await Model.load(file, { gpuLayers });
  const stop = new StopSignals({ signals: ["SIGINT"] });
  const bar = new ProgressLine("eval", "count");
  const { evaluate } = await import("../commands/eval.js");
  try {
    const r = await evaluate({
      model,
      profile,
      out: path.resolve(values.out),
      policies,
      targets,
      taus,
      tauFrom,
      modes,
      batch,
      window,
      seed,
      threads,
      template,
      tasks: tasksFile
        ? { file: tasksFile }
        : kinds.length > 0
          ? { kinds, lengths, samples, filler: values.filler ?? defaultFillerPath(), format: needleFormat }
          : undefined,
      text: isText ? { file: values.text!, lengths, samples, continuation } : undefined,
      signal: stop.signal,
      onProgress: (d, t) => bar.update(d, t),
      onNote: (n) => process.stderr.write(`note: ${n}\n`),
    });
    bar.done();
    if (values.json) process.stdout.write(JSON.stringify({ summary: r.summary, files: r.files, interrupted: r.interrupted }, null, 2) + "\n");
    else {
      process.stdout.write(`${r.table}\n\n${r.chart}\n\nwritten: ${r.files.join(", ")}\n`);
    }
    if (r.interrupted) {
      process.stderr.write("interrupted: the rows made so far are in the output folder; run the same command again to resume\n");
      return EXIT.interrupted;
    }
    return 0;
  } finally {
    stop.dispose();
    bar.done();
    model.dispose();
  }
}
