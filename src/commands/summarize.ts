// Batch summarization: documents in, one Markdown summary per document out, plus DIR/report.jsonl. Resumable (a
// summary that exists is skipped, a long input resumes at its next part), atomic (temp file + rename), one run per
// DIR at a time, and one bad input never stops the batch. The pieces: summarize/plan.ts (inputs and names),
// summarize/report.ts (the merged report), summarize/map-reduce.ts (one document), summarize/prompt.ts (prompts).
import { mkdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { UserError, errorMessage } from "../base/errors.js";
import { loadDocument } from "../documents/index.js";
import { removeStaleTemps, writeFileAtomic } from "../base/files.js";
import { lockOutputFolder } from "./summarize/folder-lock.js";
import { Interrupted, LABEL_TOKENS, MIN_PARTS_PER_CALL, summarizeText, type Engine } from "./summarize/map-reduce.js";
import { PartCache } from "./summarize/part-cache.js";
import { describeFailure, isFile, planInputs, type PlannedInput } from "./summarize/plan.js";
import { DEFAULT_TEMPLATE, PromptBuilder, checkTemplate, documentBudget } from "./summarize/prompt.js";
import { REPORT_NAME, ReportFile, changedSettings, type ReportEntry, type SummarySettings } from "./summarize/report.js";

export { DEFAULT_TEMPLATE, PromptBuilder, checkTemplate, renderTemplate } from "./summarize/prompt.js";
export { SUMMARY_SUFFIX, planInputs, summaryName, type PlannedInput } from "./summarize/plan.js";
export { REPORT_NAME, type ReportEntry, type SummarySettings } from "./summarize/report.js";
export { summarizeText, type Engine } from "./summarize/map-reduce.js";
export { removeStaleTemps } from "../base/files.js";

/** What happened to one input in this run (the report file keeps, for a skip, the line of the run that made it). */
export interface RunEntry extends ReportEntry {
  /** For a skipped input: the settings this run differs in from the run that made the summary. */
  settingsChanged?: string[];
}

export type BatchEvent =
  | { type: "plan"; inputs: readonly PlannedInput[]; toSummarize: number; staleTempsRemoved: number }
  | { type: "start"; index: number; input: PlannedInput }
  | { type: "step"; index: number; label: string; done: number; total: number }
  | { type: "split"; index: number; parts: number; calls: number; cached: number }
  | { type: "called"; index: number; label: string; done: number; total: number; seconds: number; cached: boolean }
  | { type: "done"; index: number; entry: RunEntry };

export interface BatchOptions {
  paths: readonly string[];
  outDir: string;
  /** The prompt template, with `{{document}}` and optionally `{{name}}`. */
  template?: string;
  /** Tokens each answer may take; default min(1024, a fifth of the context). */
  maxTokens?: number;
  temperature?: number;
  seed?: number;
  /** False when `seed` was drawn at random rather than chosen: then it is not a setting to compare. Default true. */
  seedChosen?: boolean;
  /** Summarize again inputs whose summary exists. */
  force?: boolean;
  signal?: AbortSignal;
  /** What else changes a summary (model, context, KV policy, …), recorded with each summary and compared on a rerun. */
  settings?: SummarySettings;
  /** Checks the model cheaply (file, header) before the first input is read; called only if some input needs it. */
  checkModel?: () => Promise<void>;
  /** Loads the model and opens the session, called once and only if some input needs the model. */
  openEngine: () => Promise<Engine>;
  onEvent?: (e: BatchEvent) => void;
}

export interface BatchResult {
  entries: RunEntry[];
  /** The run stopped early on the signal; `entries` holds the inputs finished before. */
  interrupted: boolean;
  reportPath: string;
  /** Inputs the run was given (after expansion): entries.length when it was not interrupted. */
  total: number;
}

export async function summarizeBatch(opts: BatchOptions): Promise<BatchResult> {
  const template = opts.template ?? DEFAULT_TEMPLATE;
  checkTemplate(template);
  const outDir = opts.outDir;
  await ensureFolder(outDir);
  const lock = await lockOutputFolder(outDir);
  try {
    return await runBatch(opts, template);
  } finally {
    await lock.release();
  }
}

async function runBatch(opts: BatchOptions, template: string): Promise<BatchResult> {
  const outDir = opts.outDir;
  const settings: SummarySettings = {
    ...opts.settings,
    template: template === DEFAULT_TEMPLATE ? "default" : template,
    maxTokens: opts.maxTokens ?? "auto",
    temperature: opts.temperature ?? 0.2,
    seed: opts.seedChosen === false ? null : (opts.seed ?? null),
  };
  const staleTempsRemoved = await removeStaleTemps(outDir);
  const inputs = await planInputs(opts.paths, outDir);
  const skip = await Promise.all(inputs.map(async (p) => p.output !== null && !opts.force && (await isFile(join(outDir, p.output)))));
  const toSummarize = inputs.filter((p, i) => p.output !== null && !skip[i]).length;
  opts.onEvent?.({ type: "plan", inputs, toSummarize, staleTempsRemoved });

  const reportPath = join(outDir, REPORT_NAME);
  const result: BatchResult = { entries: [], interrupted: false, reportPath, total: inputs.length };
  if (opts.signal?.aborted) return { ...result, interrupted: true };
  const report = await ReportFile.open(reportPath);
  // A model that cannot be used fails the run before any input is read, not at the first one that needs it.
  if (toSummarize > 0) await opts.checkModel?.();

  // Loaded at the first document that reads well, so that a rerun with nothing left to do (only skips and inputs
  // that fail to read) never pays for the model.
  let started: { engine: Engine; prompts: PromptBuilder; maxTokens: number } | null = null;
  const start = async () => {
    if (started) return started;
    const engine = await opts.openEngine();
    const maxTokens = opts.maxTokens ?? defaultMaxTokens(engine.session.contextSize);
    const prompts = new PromptBuilder(engine.model);
    const room = documentBudget(engine.session.contextSize, maxTokens, prompts, template, "document.pdf (parts 999-999 of 999)");
    const needed = MIN_PARTS_PER_CALL * (maxTokens + LABEL_TOKENS);
    if (room < needed) {
      throw new UserError(
        `a ${engine.session.contextSize}-token context leaves too little room for documents with --max-tokens ${maxTokens} ` +
          `(room for ${Math.max(0, room)} tokens of text, at least ${needed} needed); raise --ctx or lower --max-tokens`,
      );
    }
    started = { engine, prompts, maxTokens };
    return started;
  };

  for (let index = 0; index < inputs.length; index++) {
    if (opts.signal?.aborted) return { ...result, interrupted: true };
    const input = inputs[index];
    opts.onEvent?.({ type: "start", index, input });
    const t0 = performance.now();
    const counts = { tokensIn: 0, tokensOut: 0, chunks: 0 };
    const entry = (status: ReportEntry["status"], output: string | null, error: string | null): RunEntry => ({
      path: input.path,
      status,
      output,
      error,
      tokensIn: counts.tokensIn,
      tokensOut: counts.tokensOut,
      seconds: Math.round(performance.now() - t0) / 1000,
      chunks: counts.chunks,
      ...(status === "ok" ? { settings } : {}),
    });
    const finish = async (done: RunEntry) => {
      const { settingsChanged, ...line } = done;
      await report.record(line, input.output);
      void settingsChanged;
      result.entries.push(done);
      opts.onEvent?.({ type: "done", index, entry: done });
    };
    if (input.output === null) {
      await finish(entry("error", null, input.problem ?? `${input.path}: cannot be read`));
      continue;
    }
    if (skip[index]) {
      const changed = changedSettings(report.previous(input.output)?.settings, settings);
      await finish({ ...entry("skipped", input.output, null), ...(changed.length > 0 ? { settingsChanged: changed } : {}) });
      continue;
    }
    let doc;
    try {
      doc = await loadDocument(input.path);
    } catch (e) {
      await finish(entry("error", null, describeFailure(input.path, e)));
      continue;
    }
    // A model that cannot load, or a context too small for any document, fails the run, not this input.
    const { engine, prompts, maxTokens } = await start();
    if (opts.signal?.aborted) return { ...result, interrupted: true };
    const cache = await PartCache.open(outDir, input.output, { ...settings, maxTokens, contextSize: engine.session.contextSize });
    try {
      engine.session.clear();
      const text = await summarizeText(engine, prompts, doc.text, {
        template,
        name: doc.name,
        maxTokens,
        temperature: opts.temperature ?? 0.2,
        seed: opts.seed,
        signal: opts.signal,
        counts,
        cache,
        onStep: (label, d, total) => opts.onEvent?.({ type: "step", index, label, done: d, total }),
        onSplit: (parts, calls, cached) => opts.onEvent?.({ type: "split", index, parts, calls, cached }),
        onCalled: (label, d, total, seconds, cached) => opts.onEvent?.({ type: "called", index, label, done: d, total, seconds, cached }),
      });
      if (text.length === 0) throw new UserError(`${input.path}: the model returned an empty summary`);
      const target = join(outDir, input.output);
      await mkdir(dirname(target), { recursive: true });
      await writeFileAtomic(target, Buffer.from(text + "\n", "utf8"));
      await cache.discard();
      await finish(entry("ok", input.output, null));
    } catch (e) {
      if (e instanceof Interrupted) return { ...result, interrupted: true };
      await finish(entry("error", null, describeFailure(input.path, e)));
    }
  }
  return result;
}

function defaultMaxTokens(contextSize: number): number {
  return Math.max(16, Math.min(1024, Math.floor(contextSize / 5)));
}

async function ensureFolder(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new UserError(`cannot create the output folder ${dir}: ${errorMessage(e)}`);
  }
  if (!(await stat(dir)).isDirectory()) throw new UserError(`the output path ${dir} is not a folder`);
}
