import { CalibrationInterrupted, calibrate, type CalibrateEvent, type CalibrationReport } from "../commands/calibrate.js";
import { DEFAULT_WINDOW } from "../engine/kv.js";
import { HELD_OUT_FILE } from "../calibrate/data.js";
import { requireModel, resolveSetting } from "../settings/resolve.js";
import { intFlag, numberFlag } from "./args.js";
import { atMostPositionals, defineCommand, oneOf } from "./command.js";
import { MODEL_OPTION, RUNTIME_OPTIONS } from "./options.js";
import { UsageError } from "../base/errors.js";
import { resolveModelArg } from "./model-arg.js";
import { PhasedProgress } from "../base/progress.js";
import { StopSignals } from "../base/signals.js";
import { EXIT } from "./exit-codes.js";

export const CALIBRATE = defineCommand({
  name: "calibrate",
  usage: ["[MODEL] --kind linear|mlp --out DIR [options]"],
  description: `Fits a KVzap surrogate for a model and writes it as a profile. Each prompt's context is followed by "Repeat the
previous context exactly." and the context again; the KVzip+ oracle scores how much the repetition draws on each
context pair, and the surrogate learns to predict those (log) scores from the layer's attn_norm input. Then τ is
chosen from a table measured on held-out prompts, checked against the real memory, and the profile is written to
DIR with DIR/report.json. Oracle results are cached in DIR.cache, so an interrupted run resumes.`,
  arguments: [["MODEL", "a GGUF path, hf:user/repo:quant or an http(s) URL (or --model; default: the configured model)"]],
  groups: [
    {
      options: {
        ...MODEL_OPTION,
        kind: {
          value: "linear|mlp",
          help: "linear: ridge regression; mlp: D → D/8 → KV heads, GELU, AdamW (15 epochs)",
          check: oneOf("kind", ["linear", "mlp"]),
        },
        out: { short: "o", value: "DIR", help: "the profile folder to write; an existing profile there is replaced only with --force" },
        force: { type: "boolean", help: "replace the profile at --out" },
        data: {
          value: "PATH",
          multiple: true,
          help: "calibration text: a file, folder or pattern (.txt .md .pdf); repeat the flag for more",
          default: `the shared corpora without ${HELD_OUT_FILE}, which --check then uses`,
        },
        target: { value: "R", help: "compression to reach, full / kept (e.g. 3x)", default: "3x", check: (v: string) => void parseTarget(v) },
        keep: { value: "F", help: "or: the fraction of the KV cache to keep (e.g. 0.33)", check: (v: string) => void numberFlag(v, "keep", 1e-6, 1) },
        prompts: {
          value: "N",
          help: "oracle prompts (5% of them, at least 1, are held out)",
          default: "16",
          check: (v: string) => void intFlag(v, "prompts", 2, 100_000),
        },
        "prompt-tokens": {
          value: "N",
          help: "typical prompt length: prompts are cut to N ± 25% tokens (lowered to fit)",
          default: "1000",
          check: (v: string) => void intFlag(v, "prompt-tokens", 16, 1 << 20),
        },
        window: { value: "N", help: "recent tokens always kept", default: String(DEFAULT_WINDOW), check: (v: string) => void intFlag(v, "window", 0, 1 << 20) },
        seed: {
          value: "S",
          help: "seed for prompts, samples and the MLP's initial weights",
          default: "0",
          check: (v: string) => void intFlag(v, "seed", 0, 0xffffffff),
        },
        check: { type: "boolean", help: "also measure perplexity and KL(full ‖ kvzap) on held-out text at the chosen τ" },
        name: { value: "NAME", help: "the profile's name", default: "MODEL's file name and the kind" },
        json: { type: "boolean", help: "print the report as JSON on stdout" },
        ctx: { ...RUNTIME_OPTIONS.ctx, help: "the context the prompts must fit" },
        threads: RUNTIME_OPTIONS.threads,
        "gpu-layers": RUNTIME_OPTIONS["gpu-layers"],
        device: {
          value: "auto|cpu|cuda",
          help: "where the oracle and the MLP training compute (auto: CUDA when this build has a GPU, else the CPU)",
          default: "auto",
          check: oneOf("device", ["auto", "cpu", "cuda"]),
        },
        "cache-dir": RUNTIME_OPTIONS["cache-dir"],
      },
    },
  ],
  notes: "Exit status: 0 done, 1 bad input or failure, 2 usage error, 130 stopped (finished oracle prompts stay cached).",
});

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = CALIBRATE.parse(argv);
  if (CALIBRATE.printHelpIf(values)) return 0;
  atMostPositionals(positionals, 1, "MODEL (give calibration files with --data, once per path)");
  if (values.model !== undefined && positionals.length > 0) throw new UsageError("give the model once: as MODEL or as --model");
  const modelArg = values.model ?? positionals[0];
  const data = values.data ?? [];
  if (values.kind !== "linear" && values.kind !== "mlp")
    throw new UsageError(values.kind === undefined ? "--kind linear|mlp is required" : `--kind must be linear or mlp, got '${values.kind}'`);
  if (values.out === undefined || values.out.trim() === "") throw new UsageError("--out DIR is required: the profile folder to write");
  if (values.target !== undefined && values.keep !== undefined) throw new UsageError("give --target or --keep, not both");
  const target = values.keep !== undefined ? { keep: numberFlag(values.keep, "keep", 1e-6, 1)! } : { compression: parseTarget(values.target ?? "3x") };
  const prompts = intFlag(values.prompts, "prompts", 2, 100_000) ?? 16;
  const promptTokens = intFlag(values["prompt-tokens"], "prompt-tokens", 16, 1 << 20);
  const window = intFlag(values.window, "window", 0, 1 << 20) ?? DEFAULT_WINDOW;
  const seed = intFlag(values.seed, "seed", 0, 0xffffffff) ?? 0;
  const device = (values.device ?? "auto") as "auto" | "cpu" | "cuda";
  const ctx = resolveSetting("contextSize", values.ctx);
  const threads = resolveSetting("threads", values.threads).value;
  const gpuLayers = resolveSetting("gpuLayers", values["gpu-layers"]).value;
  const spec = requireModel(modelArg);
  const modelFile = await resolveModelArg(spec, values["cache-dir"]);

  const progress = new StageProgress();
  const stop = new StopSignals({
    onStop: () => progress.note("stopping after the current step; finished oracle prompts stay cached (run the same command to resume)"),
  });
  let report: CalibrationReport;
  try {
    report = await calibrate({
      modelFile,
      gpuLayers,
      threads,
      data: data.length > 0 ? data : undefined,
      kind: values.kind,
      target,
      prompts,
      promptTokens,
      seed,
      window,
      ctx: ctx.value,
      check: values.check ?? false,
      device,
      out: values.out,
      force: values.force === true,
      name: values.name,
      signal: stop.signal,
      onEvent: (e) => progress.event(e),
    });
  } catch (e) {
    progress.done();
    if (e instanceof CalibrationInterrupted) {
      process.stderr.write(`kvzap calibrate: ${e.message}\n`);
      return stop.exitCode ?? EXIT.interrupted;
    }
    throw e;
  } finally {
    progress.done();
    stop.dispose();
  }
  if (values.json) process.stdout.write(JSON.stringify(report) + "\n");
  else process.stdout.write(summary(report) + "\n");
  return 0;
}

/** "3x", "3", "3.5X" → 3, 3, 3.5. */
export function parseTarget(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*[xX]?\s*$/.exec(value);
  const n = m ? Number(m[1]) : NaN;
  if (!(n >= 1) || !Number.isFinite(n)) throw new UsageError(`--target must be a compression ratio of at least 1, like 3x, got '${value}'`);
  return n;
}

/** One progress line per stage (with ETA), stage headings and notes on stderr. */
class StageProgress extends PhasedProgress {
  event(e: CalibrateEvent): void {
    if (e.type === "progress") this.update(e.label ?? e.stage, Math.round(e.done * 100) / 100, e.total);
    else this.note(e.text);
  }
}

function fmt(x: number, digits = 3): string {
  return Number.isFinite(x) ? x.toFixed(digits) : "n/a";
}

export function summary(r: CalibrationReport): string {
  const lines: string[] = [];
  const kind = r.fit.kind;
  lines.push(`kvzap calibrate: ${r.model.file}, ${kind} surrogate, ${r.settings.prompts} prompts (${r.r2.heldOutPrompts} held out), ${r.oracle.pairs} pairs`);
  const where = r.oracle.device === null ? "" : ` on ${r.oracle.device === "cuda" ? "CUDA" : "the CPU"}`;
  lines.push(`oracle: ${r.oracle.computed} prompts computed${where}, ${r.oracle.cached} from the cache (${r.oracle.seconds.toFixed(1)}s)`);
  lines.push("");
  const heads = r.r2.perHead[0]?.length ?? 0;
  lines.push(["layer", "R² (held out)", ...Array.from({ length: heads }, (_, h) => `head ${h}`)].join("  "));
  r.r2.perLayer.forEach((v, l) => {
    lines.push([String(l).padEnd(5), fmt(v).padStart(13), ...r.r2.perHead[l].map((x) => fmt(x).padStart(6))].join("  "));
  });
  lines.push(`${"mean".padEnd(5)}  ${fmt(r.r2.mean).padStart(13)}   (training: ${fmt(r.r2.trainMean)})`);
  lines.push("");
  const t = r.tau;
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const [want, table, measured] =
    "compression" in t.target
      ? [`${t.target.compression}x`, `${t.predicted.compression.toFixed(2)}x`, `${t.measuredCompression.toFixed(2)}x`]
      : [`keep ${pct(t.target.keep)}`, `keeps ${pct(t.predicted.keep)}`, `keeps ${pct(t.measuredKeep)} (${t.measuredCompression.toFixed(2)}x)`];
  lines.push(
    `τ = ${t.chosen} for ${want} (window ${t.window}): table ${table}, measured ${measured} on ${t.prompts} held-out prompts ${t.withinTolerance ? "(within" : "(OUTSIDE"} ±${t.tolerance * 100}%)`,
  );
  if (r.check) {
    const c = r.check;
    lines.push(
      `check (${c.text}, ${c.tokens} tokens): perplexity ${fmt(c.perplexityFull, 2)} → ${fmt(c.perplexityKvzap, 2)} (${c.perplexityChange >= 0 ? "+" : ""}${fmt(c.perplexityChange * 100, 2)}%), ` +
        `KL ${fmt(c.klMean, 4)} nats/token, top-1 agreement ${fmt(c.top1Agreement * 100, 1)}%, ${fmt(c.compression, 2)}x`,
    );
  }
  const tm = r.timings;
  lines.push(
    `time: ${Object.entries(tm)
      .filter(([k]) => k !== "total")
      .map(([k, v]) => `${k} ${v.toFixed(1)}s`)
      .join(", ")}; total ${(tm.total ?? 0).toFixed(1)}s`,
  );
  lines.push(`profile: ${r.profile} (report: ${r.profile}/report.json)`);
  return lines.join("\n");
}
