import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import ora, { type Ora } from "ora";
import { REPORT_NAME, checkTemplate, summarizeBatch, type BatchEvent, type BatchResult, type PlannedInput, type RunEntry } from "../commands/summarize.js";
import { readModelSummary } from "../engine/gguf.js";
import type { Model } from "../engine/model.js";
import { isRemoteModelSpec } from "../settings/schema.js";
import { resolveSetting } from "../settings/resolve.js";
import { intFlag, numberFlag } from "./args.js";
import { defineCommand } from "./command.js";
import { KV_GROUP } from "./kv-args.js";
import { MAX_TOKENS_OPTION, MODEL_OPTION, RUNTIME_OPTIONS, SEED_OPTION, temperatureOption } from "./options.js";
import { UsageError, UserError, errorMessage } from "../base/errors.js";
import { SIGNAL_EXIT_CODE, StopSignals } from "../base/signals.js";
import { resolveModelArg } from "./model-arg.js";
import { loadRuntimeModel, resolveRuntime } from "./runtime.js";

export const SUMMARIZE = defineCommand({
  name: "summarize",
  usage: ["PATHS... --out DIR [options]"],
  description: `Summarizes documents (PDF, plain text, Markdown) one by one with a local model: one Markdown summary per input in
DIR, named after the input's path relative to the current folder (reports/q1.pdf -> DIR/reports/q1.pdf.summary.md;
an input outside it: its absolute path), and DIR/report.jsonl with one line per input, merged over runs:
  {path, status: "ok"|"error"|"skipped", output, error, tokensIn, tokensOut, seconds, chunks, settings, at}

Rerunning resumes: an input whose summary exists is skipped (--force redoes it), and a skipped summary made with
other settings (model, template, --max-tokens, --temp, --seed, --ctx, KV flags) is reported as such. A document
longer than the context is summarized in parts whose summaries are then combined; finished parts are kept in
DIR/.kvzap-parts, so a stopped run resumes inside a long input. A failing input is reported and the batch goes on.
One run at a time per DIR: a second one is refused (exit 2) and told which process holds it.`,
  arguments: [["PATHS", "files, folders (searched recursively for .pdf .txt .md .markdown) and patterns (docs/**/*.pdf)"]],
  groups: [
    {
      options: {
        out: { short: "o", value: "DIR", help: "where summaries and report.jsonl go (created if needed)" },
        ...MODEL_OPTION,
        "prompt-template": {
          value: "F",
          help: "a file with the prompt; {{document}} is replaced by the text, {{name}} by the file name. It becomes the user turn of the model's chat template",
          default: 'a built-in "summarize this document" prompt',
        },
        "max-tokens": { ...MAX_TOKENS_OPTION["max-tokens"], default: "the maxTokens setting if set, else a fifth of the context, at most 1024" },
        temp: temperatureOption(0.2),
        ...SEED_OPTION,
        force: { type: "boolean", help: "summarize again inputs whose summary exists" },
        json: { type: "boolean", help: "print the run's report as JSON on stdout" },
        ...RUNTIME_OPTIONS,
      },
    },
    KV_GROUP,
  ],
  notes: `Exit status: 0 when every input was summarized or skipped, 1 when any failed, 2 for a usage error,
130 when stopped with Ctrl-C (143 on SIGTERM); finished summaries and their report lines are kept.`,
});

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = SUMMARIZE.parse(argv);
  if (SUMMARIZE.printHelpIf(values)) return 0;
  if (positionals.length === 0) throw new UsageError("no PATHS given: name the files, folders or patterns to summarize");
  if (values.out === undefined || values.out.trim() === "") throw new UsageError("--out DIR is required: the folder for the summaries and report.jsonl");
  const maxTokensSetting = resolveSetting("maxTokens", values["max-tokens"]);
  const maxTokens = maxTokensSetting.source === "default" ? undefined : maxTokensSetting.value;
  const temperature = numberFlag(values.temp, "temp", 0, 100) ?? 0.2;
  const seed = intFlag(values.seed, "seed", 0, 0xffffffff) ?? Math.floor(Math.random() * 0xffffffff);
  const template = values["prompt-template"] === undefined ? undefined : await readTemplate(values["prompt-template"]);
  const runtime = resolveRuntime(values);

  const settings = {
    model: isRemoteModelSpec(runtime.modelSpec) ? runtime.modelSpec : resolve(runtime.modelSpec),
    contextSize: runtime.session.contextSize ?? "auto",
    kv: values.kv ?? null,
    profile: values.profile === undefined ? null : resolve(values.profile),
    tau: values.tau ?? null,
    window: values.window ?? null,
    kvDecoding: values["kv-decoding"] ?? null,
    kvBudget: values["kv-budget"] ?? null,
  };
  const progress = new BatchProgress(Boolean(process.stderr.isTTY) && (process.stderr.columns ?? 0) > 0, values.out);
  // A second Ctrl-C leaves at once: summaries are renamed into place whole and report lines are written in one call,
  // so quitting mid-way leaves at most a hidden temp file, which the next run deletes.
  const stop = new StopSignals({
    onStop: () => progress.note("stopping: the summary in progress is dropped, finished ones are kept (press Ctrl-C again to quit now)"),
    onSecond: (signal) => {
      progress.stop();
      process.exit(SIGNAL_EXIT_CODE[signal]);
    },
  });

  let model: Model | null = null;
  const started = performance.now();
  let result: BatchResult;
  try {
    result = await summarizeBatch({
      paths: positionals,
      outDir: values.out,
      template,
      maxTokens,
      temperature,
      seed,
      // A seed drawn at random is no setting of the user's: comparing it would call every rerun changed.
      seedChosen: values.seed !== undefined,
      force: values.force ?? false,
      signal: stop.signal,
      settings,
      checkModel: async () => {
        await readModelSummary(await resolveModelArg(runtime.modelSpec, values["cache-dir"]));
      },
      openEngine: async () => {
        progress.loading(runtime.modelSpec);
        model = await loadRuntimeModel(runtime, values, (f) => progress.loadingProgress(f));
        const session = await model.createSession(runtime.session);
        progress.loaded();
        for (const note of session.notes) progress.note(`note: ${note}`);
        return { model, session };
      },
      onEvent: (e) => progress.event(e),
    });
  } finally {
    progress.stop();
    stop.dispose();
    (model as Model | null)?.dispose();
  }

  const seconds = Math.round(performance.now() - started) / 1000;
  const counts = tally(result.entries);
  const reportPath = join(values.out, REPORT_NAME);
  if (values.json) {
    const out = { outDir: values.out, report: reportPath, interrupted: result.interrupted, total: result.total, ...counts, seconds, results: result.entries };
    process.stdout.write(JSON.stringify(out) + "\n");
  } else {
    const head = result.interrupted ? `stopped after ${result.entries.length} of ${result.total} inputs: ` : "";
    const changed = result.entries.filter((e) => e.settingsChanged !== undefined).length;
    const skippedWhy = changed > 0 ? `summary exists; ${changed} made with other settings, --force redoes them` : "summary exists";
    process.stdout.write(
      `${head}${counts.ok} summarized, ${counts.skipped} skipped (${skippedWhy}), ${counts.failed} failed, in ${formatSeconds(seconds)}; report: ${reportPath}\n`,
    );
  }
  if (stop.exitCode !== null) return stop.exitCode;
  return counts.failed > 0 ? 1 : 0;
}

function tally(entries: readonly RunEntry[]): { ok: number; skipped: number; failed: number } {
  return {
    ok: entries.filter((e) => e.status === "ok").length,
    skipped: entries.filter((e) => e.status === "skipped").length,
    failed: entries.filter((e) => e.status === "error").length,
  };
}

async function readTemplate(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(code === "ENOENT" ? `prompt template not found: ${file}` : `cannot read the prompt template ${file}: ${errorMessage(e)}`);
  }
  try {
    checkTemplate(text.replace(/^\uFEFF/, ""));
  } catch (e) {
    throw new UserError(`${file}: ${errorMessage(e)}`);
  }
  return text.replace(/^\uFEFF/, "");
}

export function formatSeconds(s: number): string {
  if (s < 10) return `${s.toFixed(1)}s`;
  if (s < 60) return `${Math.round(s)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

/**
 * Progress on stderr, outside Ink. On a terminal: a line per finished input, under an ora spinner that carries a bar,
 * the count, the ETA and the current step. Otherwise: just the line per finished input (with the ETA), so logs stay
 * short and greppable.
 */
class BatchProgress {
  private spinner: Ora | null = null;
  private timer: NodeJS.Timeout | null = null;
  private inputs: readonly PlannedInput[] = [];
  private toSummarize = 0;
  /** Inputs that needed the model and are finished (ok or failed). */
  private summarized = 0;
  /** Finished inputs that ran the model, and the seconds they took. */
  private paced = 0;
  private pacedSeconds = 0;
  private finished = 0;
  private current: { path: string; started: number; label: string; fraction: number } | null = null;
  /** Model calls of split inputs made in this run, and their seconds: the pace of a long input's estimate. */
  private calls = 0;
  private callSeconds = 0;
  /** Fraction of the model loaded, while it loads. */
  private modelLoad: number | null = null;

  constructor(
    private readonly tty: boolean,
    private readonly outDir: string,
  ) {}

  event(e: BatchEvent): void {
    switch (e.type) {
      case "plan":
        this.inputs = e.inputs;
        this.toSummarize = e.toSummarize;
        if (e.staleTempsRemoved > 0) this.line(`removed ${e.staleTempsRemoved} temp file(s) left by an interrupted run`);
        if (this.tty && e.toSummarize === 0) break;
        this.ensureSpinner();
        break;
      case "start":
        this.current = { path: e.input.path, started: performance.now(), label: "reading", fraction: 0 };
        this.redraw();
        break;
      case "step":
        if (this.current) {
          this.current.label = e.label;
          this.current.fraction = e.total > 0 ? Math.min(0.99, e.done / e.total) : 0;
        }
        this.redraw();
        break;
      case "split": {
        const path = this.inputs[e.index]?.path ?? "";
        const kept = e.cached > 0 ? ` (${e.cached} kept from an earlier run)` : "";
        const eta = this.secondsPerCall !== null ? `, about ${formatSeconds(this.secondsPerCall * Math.max(0, e.calls - e.cached))}` : "";
        this.line(`${path}: longer than the context, ${e.parts} parts${kept}, about ${e.calls} model calls${eta}`);
        break;
      }
      case "called":
        if (!e.cached) {
          this.callSeconds += e.seconds;
          this.calls++;
        }
        // On a terminal the spinner shows the part; in a log, a line per part says the run is alive.
        if (!this.tty) {
          const path = this.inputs[e.index]?.path ?? "";
          const pace = this.secondsPerCall;
          const left = pace !== null ? `, about ${formatSeconds(pace * Math.max(0, e.total - e.done))} left` : "";
          this.line(
            `  ${path}: ${e.label} ${e.cached ? "kept from an earlier run" : `done in ${formatSeconds(e.seconds)}`} (${e.done}/${e.total} calls${left})`,
          );
        }
        break;
      case "done": {
        this.finished++;
        // Every input counted in toSummarize ends here as ok or error; those that reached the model pace the ETA
        // (an unreadable file fails in a millisecond and says nothing about the model's speed).
        if (e.entry.status === "ok" || (e.entry.status === "error" && this.inputs[e.index]?.output !== null)) this.summarized++;
        if (e.entry.tokensIn > 0) {
          this.paced++;
          this.pacedSeconds += e.entry.seconds;
        }
        this.current = null;
        this.line(this.describe(e.index, e.entry));
        this.redraw();
        break;
      }
    }
  }

  loading(spec: string): void {
    this.modelLoad = 0;
    // A download draws its own progress line; a spinner would fight it.
    if (isRemoteModelSpec(spec)) this.stop();
    else if (this.tty) this.redraw();
    if (!this.spinner) this.line(`loading ${spec}`);
  }

  loadingProgress(fraction: number): void {
    this.modelLoad = fraction;
    this.redraw();
  }

  loaded(): void {
    this.modelLoad = null;
    this.ensureSpinner();
    this.redraw();
  }

  note(text: string): void {
    this.line(text);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.spinner?.stop();
    this.spinner = null;
  }

  private ensureSpinner(): void {
    if (!this.tty || this.spinner) return;
    this.spinner = ora({ stream: process.stderr, discardStdin: false, isEnabled: true, text: "" }).start();
    // The ETA counts down between events too.
    this.timer = setInterval(() => this.redraw(), 1000);
    this.timer.unref();
  }

  private redraw(): void {
    if (!this.spinner) return;
    // One line that never wraps, so that the spinner redraws in place (a long path is cut at the end).
    const room = Math.max(20, (process.stderr.columns ?? 80) - 3);
    const text = this.status();
    this.spinner.text = text.length > room ? text.slice(0, room - 1) + "…" : text;
  }

  /** Bar, percentage, count and ETA, weighted by the inputs that need the model (skips are instant). */
  private status(): string {
    const total = this.inputs.length;
    const cur = this.current;
    const doneWork = this.summarized + (cur ? cur.fraction : 0);
    const fraction = this.toSummarize > 0 ? Math.min(1, doneWork / this.toSummarize) : total > 0 ? this.finished / total : 0;
    const width = 24;
    const full = Math.round(fraction * width);
    const bar = "█".repeat(full) + "░".repeat(width - full);
    const eta = this.eta();
    const what = this.modelLoad !== null ? `  loading the model: ${Math.round(this.modelLoad * 100)}%` : cur ? `  ${cur.path}: ${cur.label}` : "";
    return `[${bar}] ${String(Math.round(fraction * 100)).padStart(3)}%  ${Math.min(this.finished + (cur ? 1 : 0), total)}/${total}${eta ? `  ETA ${eta}` : ""}${what}`;
  }

  private get secondsPerCall(): number | null {
    return this.calls > 0 ? this.callSeconds / this.calls : null;
  }

  private eta(): string | null {
    const remaining = this.toSummarize - this.summarized;
    if (remaining <= 0) return null;
    const cur = this.current;
    const elapsed = cur ? (performance.now() - cur.started) / 1000 : 0;
    let perInput: number;
    if (this.paced > 0) perInput = this.pacedSeconds / this.paced;
    else if (cur && cur.fraction > 0.05) perInput = elapsed / cur.fraction;
    else return null;
    const left = Math.max(0, perInput * remaining - Math.min(elapsed, perInput));
    return formatSeconds(left);
  }

  private describe(index: number, entry: RunEntry): string {
    const n = `[${index + 1}/${this.inputs.length}]`;
    if (entry.status === "skipped" && entry.settingsChanged !== undefined)
      return `${n} skipped ${entry.path} (summary exists, made with other settings: ${entry.settingsChanged.join(", ")}; --force redoes it)`;
    if (entry.status === "skipped") return `${n} skipped ${entry.path} (summary exists)`;
    if (entry.status === "error") return `${n} error   ${entry.error ?? entry.path}`;
    const chunks = entry.chunks > 1 ? `, ${entry.chunks} chunks` : "";
    const eta = !this.tty ? this.eta() : null;
    return `${n} ok      ${entry.path} -> ${join(this.outDir, entry.output ?? "")} (${formatSeconds(entry.seconds)}${chunks})${eta ? `; ETA ${eta}` : ""}`;
  }

  private line(text: string): void {
    // While the spinner runs, ora clears it, lets the line through and draws it again below.
    process.stderr.write(text + "\n");
  }
}
