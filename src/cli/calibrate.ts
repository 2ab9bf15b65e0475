import { CalibrationInterrupted, calibrate, type CalibrateEvent, type CalibrationReport } from "../commands/calibrate.js";
import { DEFAULT_WINDOW } from "../engine/kv.js";
import { SETTING_OPTIONS } from "../settings/schema.js";
import { HELD_OUT_FILE } from "../calibrate/data.js";
import { requireModel, resolveSetting } from "../settings/resolve.js";
import { intFlag, numberFlag, parseCommandArgs } from "./args.js";
import { UsageError } from "../base/errors.js";
import { resolveModelArg } from "./model-arg.js";
import { PhasedProgress } from "../base/progress.js";
import { StopSignals } from "../base/signals.js";
import { EXIT } from "./exit-codes.js";

const HELP = `usage: kvzap calibrate MODEL --kind linear|mlp --out DIR [options]

Fits a KVzap surrogate for a model and writes it as a profile. Each prompt's context is followed by "Repeat the
previous context exactly." and the context again; the KVzip+ oracle scores how much the repetition draws on each
context pair, and the surrogate learns to predict those (log) scores from the layer's attn_norm input. Then τ is
chosen from a table measured on held-out prompts, checked against the real memory, and the profile is written to
DIR with DIR/report.json. Oracle results are cached in DIR.cache, so an interrupted run resumes.

  MODEL                 a GGUF path, hf:user/repo:quant or an http(s) URL (or --model)
  --kind linear|mlp     linear: ridge regression; mlp: D → D/8 → KV heads, GELU, AdamW (15 epochs)
  -o, --out DIR         the profile folder to write
  --data PATHS...       calibration text: files, folders, patterns (.txt .md .pdf; repeatable; default: the shared
                        corpora without ${HELD_OUT_FILE}, which --check then uses)
  --target R            compression to reach, full / kept (e.g. 3x; default 3x)
  --keep F              or: the fraction of the KV cache to keep (e.g. 0.33)
  --prompts N           oracle prompts (default 16; 5% of them, at least 1, are held out)
  --prompt-tokens N     typical prompt length: prompts are cut to N ± 25% tokens (default 1000; lowered to fit)
  --window N            recent tokens always kept (default ${DEFAULT_WINDOW})
  --seed S              seed for prompts, samples and the MLP's initial weights (default 0)
  --check               also measure perplexity and KL(full ‖ kvzap) on held-out text at the chosen τ
  --name NAME           the profile's name (default: MODEL's file name and the kind)
  --json                print the report as JSON on stdout
  --ctx N               the context the prompts must fit (default: the model's training context)
  --threads N           CPU threads (default: all cores)
  --gpu-layers N        layers on the GPU; -1 = all (a CPU build ignores it)
  --device auto|cpu|cuda  where the oracle and the MLP training compute (default auto: CUDA when this build has
                        a GPU, else the CPU)
  --cache-dir D         where downloaded models are kept

Exit status: 0 done, 1 bad input or failure, 2 usage error, 130 stopped (finished oracle prompts stay cached).`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    model: SETTING_OPTIONS.model,
    ctx: SETTING_OPTIONS.ctx,
    threads: SETTING_OPTIONS.threads,
    "gpu-layers": SETTING_OPTIONS["gpu-layers"],
    "cache-dir": SETTING_OPTIONS["cache-dir"],
    kind: { type: "string" },
    out: { type: "string", short: "o" },
    data: { type: "string", multiple: true },
    target: { type: "string" },
    keep: { type: "string" },
    prompts: { type: "string" },
    "prompt-tokens": { type: "string" },
    window: { type: "string" },
    seed: { type: "string" },
    check: { type: "boolean" },
    name: { type: "string" },
    json: { type: "boolean" },
    device: { type: "string" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    process.stdout.write(HELP + "\n");
    return 0;
  }
  // `--data a b c`: the paths after --data up to the next option arrive as positionals; the first positional is MODEL
  // unless --model was given.
  const rest = [...positionals];
  const modelArg = values.model ?? rest.shift();
  const data = [...(values.data ?? []), ...rest];
  if (values.data === undefined && rest.length > 0) throw new UsageError(`one MODEL expected, got ${positionals.length}: ${positionals.join(" ")} (give calibration files with --data)`);
  if (values.model !== undefined && positionals.length > 0 && values.data === undefined) throw new UsageError("give the model once: as MODEL or as --model");
  if (values.kind !== "linear" && values.kind !== "mlp") throw new UsageError(values.kind === undefined ? "--kind linear|mlp is required" : `--kind must be linear or mlp, got '${values.kind}'`);
  if (values.out === undefined || values.out.trim() === "") throw new UsageError("--out DIR is required: the profile folder to write");
  if (values.target !== undefined && values.keep !== undefined) throw new UsageError("give --target or --keep, not both");
  const target = values.keep !== undefined ? { keep: numberFlag(values.keep, "keep", 1e-6, 1)! } : { compression: parseTarget(values.target ?? "3x") };
  const prompts = intFlag(values.prompts, "prompts", 2, 100_000) ?? 16;
  const promptTokens = intFlag(values["prompt-tokens"], "prompt-tokens", 16, 1 << 20);
  const window = intFlag(values.window, "window", 0, 1 << 20) ?? DEFAULT_WINDOW;
  const seed = intFlag(values.seed, "seed", 0, 0xffffffff) ?? 0;
  const device = values.device ?? "auto";
  if (device !== "auto" && device !== "cpu" && device !== "cuda") throw new UsageError(`--device must be auto, cpu or cuda, got '${device}'`);
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
  lines.push(`τ = ${t.chosen} for ${want} (window ${t.window}): table ${table}, measured ${measured} on ${t.prompts} held-out prompts ${t.withinTolerance ? "(within" : "(OUTSIDE"} ±${t.tolerance * 100}%)`);
  if (r.check) {
    const c = r.check;
    lines.push(
      `check (${c.text}, ${c.tokens} tokens): perplexity ${fmt(c.perplexityFull, 2)} → ${fmt(c.perplexityKvzap, 2)} (${c.perplexityChange >= 0 ? "+" : ""}${fmt(c.perplexityChange * 100, 2)}%), ` +
        `KL ${fmt(c.klMean, 4)} nats/token, top-1 agreement ${fmt(c.top1Agreement * 100, 1)}%, ${fmt(c.compression, 2)}x`,
    );
  }
  const tm = r.timings;
  lines.push(`time: ${Object.entries(tm).filter(([k]) => k !== "total").map(([k, v]) => `${k} ${v.toFixed(1)}s`).join(", ")}; total ${(tm.total ?? 0).toFixed(1)}s`);
  lines.push(`profile: ${r.profile} (report: ${r.profile}/report.json)`);
  return lines.join("\n");
}
