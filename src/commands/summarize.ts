// Batch summarization: documents in, one Markdown summary per document out, plus DIR/report.jsonl for the run.
// Resumable (a summary that exists is skipped), atomic (temp file + rename), and one bad input never stops the batch.
import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, openSync, writeSync } from "node:fs";
import { mkdir, open, readdir, realpath, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { UserError, errorMessage } from "../base/errors.js";
import { expandInputs, loadDocument, splitText } from "../documents/index.js";
import { hasGlobMagic, splitPattern } from "../documents/glob.js";
import type { Model } from "../engine/model.js";
import type { Session } from "../engine/session.js";

export const DEFAULT_TEMPLATE = `Summarize the following document ({{name}}). Keep its main points, names and numbers, and be brief.

{{document}}`;

export const SUMMARY_SUFFIX = ".summary.md";
export const REPORT_NAME = "report.jsonl";

/** One line of report.jsonl: what happened to one input in the latest run. */
export interface ReportEntry {
  /** The input as the user spelled it (or as folder/glob expansion spelled it). */
  path: string;
  status: "ok" | "error" | "skipped";
  /** The summary's path relative to DIR (the folder holding report.jsonl); null when there is none. */
  output: string | null;
  /** One line naming the input and what went wrong; null unless status is "error". */
  error: string | null;
  /** Prompt tokens evaluated for this input in this run, over every model call (chunks and combining). */
  tokensIn: number;
  /** Tokens generated for this input in this run, over every model call. */
  tokensOut: number;
  /** Wall-clock seconds spent on this input in this run. */
  seconds: number;
  /** Pieces the document was cut into to fit the context: 1 when it fit whole, 0 when it was not summarized. */
  chunks: number;
}

/** An input after expansion: where its summary goes, or why it cannot be used. */
export interface PlannedInput {
  path: string;
  /** Relative to DIR; null when the input could not be expanded. */
  output: string | null;
  /** Set when the argument could not be expanded (missing file, empty folder, pattern with no match). */
  problem?: string;
}

export interface Engine {
  model: Model;
  session: Session;
}

export type BatchEvent =
  | { type: "plan"; inputs: readonly PlannedInput[]; toSummarize: number; staleTempsRemoved: number }
  | { type: "start"; index: number; input: PlannedInput }
  | { type: "step"; index: number; label: string; done: number; total: number }
  | { type: "done"; index: number; entry: ReportEntry };

export interface BatchOptions {
  paths: readonly string[];
  outDir: string;
  /** The prompt template, with `{{document}}` and optionally `{{name}}`. */
  template?: string;
  /** Tokens each answer may take; default min(1024, a fifth of the context). */
  maxTokens?: number;
  temperature?: number;
  seed?: number;
  /** Summarize again inputs whose summary exists. */
  force?: boolean;
  signal?: AbortSignal;
  /** Loads the model and opens the session, called once and only if some input needs the model. */
  openEngine: () => Promise<Engine>;
  onEvent?: (e: BatchEvent) => void;
}

export interface BatchResult {
  entries: ReportEntry[];
  /** The run stopped early on the signal; `entries` holds the inputs finished before. */
  interrupted: boolean;
  reportPath: string;
  /** Inputs the run was given (after expansion): entries.length when it was not interrupted. */
  total: number;
}

/** Thrown inside a document's summarization when the signal fires; never reported as an input's error. */
class Interrupted extends Error {}

/** Combining must fit at least two partial summaries per call, or it could not shrink their list. */
const MIN_PARTS_PER_CALL = 2;
/** Tokens kept free besides the answer, for tokenizer merges at the joins of template, text and chat markup. */
const MARGIN_TOKENS = 16;
/** Room for the label in front of each partial summary when partial summaries are combined. */
const LABEL_TOKENS = 32;

// ---------------------------------------------------------------------------------------------------------------
// The batch

export async function summarizeBatch(opts: BatchOptions): Promise<BatchResult> {
  const template = opts.template ?? DEFAULT_TEMPLATE;
  checkTemplate(template);
  const outDir = opts.outDir;
  await ensureFolder(outDir);
  const staleTempsRemoved = await removeStaleTemps(outDir);
  const inputs = await planInputs(opts.paths, outDir);
  const skip = await Promise.all(
    inputs.map(async (p) => p.output !== null && !opts.force && (await isFile(join(outDir, p.output)))),
  );
  const toSummarize = inputs.filter((p, i) => p.output !== null && !skip[i]).length;
  opts.onEvent?.({ type: "plan", inputs, toSummarize, staleTempsRemoved });

  const reportPath = join(outDir, REPORT_NAME);
  const result: BatchResult = { entries: [], interrupted: false, reportPath, total: inputs.length };
  if (opts.signal?.aborted) return { ...result, interrupted: true };

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

  // The report describes the latest run: rewritten from empty now, one line appended as each input finishes.
  const report = new ReportWriter(reportPath);
  try {
    for (let index = 0; index < inputs.length; index++) {
      if (opts.signal?.aborted) return { ...result, interrupted: true };
      const input = inputs[index];
      opts.onEvent?.({ type: "start", index, input });
      const t0 = performance.now();
      const counts = { tokensIn: 0, tokensOut: 0, chunks: 0 };
      const entry = (status: ReportEntry["status"], output: string | null, error: string | null): ReportEntry => ({
        path: input.path,
        status,
        output,
        error,
        tokensIn: counts.tokensIn,
        tokensOut: counts.tokensOut,
        seconds: Math.round(performance.now() - t0) / 1000,
        chunks: counts.chunks,
      });
      const finish = (done: ReportEntry) => {
        report.append(done);
        result.entries.push(done);
        opts.onEvent?.({ type: "done", index, entry: done });
      };
      if (input.output === null) {
        finish(entry("error", null, input.problem ?? `${input.path}: cannot be read`));
        continue;
      }
      if (skip[index]) {
        finish(entry("skipped", input.output, null));
        continue;
      }
      let doc;
      try {
        doc = await loadDocument(input.path);
      } catch (e) {
        finish(entry("error", null, describeFailure(input.path, e)));
        continue;
      }
      // A model that cannot load, or a context too small for any document, fails the run, not this input.
      const { engine, prompts, maxTokens } = await start();
      if (opts.signal?.aborted) return { ...result, interrupted: true };
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
          onStep: (label, d, total) => opts.onEvent?.({ type: "step", index, label, done: d, total }),
        });
        if (text.length === 0) throw new UserError(`${input.path}: the model returned an empty summary`);
        await writeFileAtomic(join(outDir, input.output), text + "\n");
        finish(entry("ok", input.output, null));
      } catch (e) {
        if (e instanceof Interrupted) return { ...result, interrupted: true };
        finish(entry("error", null, describeFailure(input.path, e)));
      }
    }
    return result;
  } finally {
    report.close();
  }
}

function describeFailure(path: string, e: unknown): string {
  const message = errorMessage(e).split("\n")[0];
  // DocumentError and our own messages already start with the path.
  return message.startsWith(`${path}:`) ? message : `${path}: ${message}`;
}

function defaultMaxTokens(contextSize: number): number {
  return Math.max(16, Math.min(1024, Math.floor(contextSize / 5)));
}

/** Appends one flushed line per finished input, so that a killed run keeps every line it wrote. */
class ReportWriter {
  private fd: number | null;
  constructor(path: string) {
    try {
      this.fd = openSync(path, "w");
    } catch (e) {
      throw new UserError(`cannot write the report ${path}: ${errorMessage(e)}`);
    }
  }
  append(entry: ReportEntry): void {
    if (this.fd === null) return;
    // One write call per line: a reader never sees half a line from a run that was merely stopped.
    writeSync(this.fd, JSON.stringify(entry) + "\n");
    fsyncSync(this.fd);
  }
  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs and output names

/**
 * Expands each argument (files, folders recursively, globs), drops duplicates and documents found inside DIR itself
 * (earlier summaries are Markdown files), and names each summary after the input's path relative to the common base
 * of the arguments: `reports/q1.pdf` → `reports/q1.pdf.summary.md`. The base comes from the arguments, not from the
 * files found, so adding a file to a folder never renames the other summaries.
 */
export async function planInputs(paths: readonly string[], outDir: string): Promise<PlannedInput[]> {
  const base = commonBase(await Promise.all(paths.map(argumentRoot)));
  const outLexical = resolve(outDir);
  const outReal = await realpath(outDir).catch(() => outLexical);
  const seen = new Set<string>();
  const claimed = new Map<string, string>();
  const planned: PlannedInput[] = [];
  for (const arg of paths) {
    let files: string[];
    try {
      files = await expandInputs([arg]);
    } catch (e) {
      planned.push({ path: arg, output: null, problem: describeFailure(arg, e) });
      continue;
    }
    const explicit = await isFile(arg);
    for (const file of files) {
      const lexical = resolve(file);
      const real = await realpath(file).catch(() => lexical);
      if (seen.has(real)) continue;
      seen.add(real);
      if (!explicit && (isInside(lexical, outLexical) || isInside(real, outReal))) continue;
      const output = summaryName(base, lexical);
      const earlier = claimed.get(output);
      if (earlier !== undefined) {
        planned.push({ path: file, output: null, problem: `${file}: its summary would have the same name as ${earlier}'s` });
        continue;
      }
      claimed.set(output, file);
      planned.push({ path: file, output });
    }
  }
  return planned;
}

/** The folder an argument's files are named from: the folder itself, a file's folder, or a pattern's literal part. */
async function argumentRoot(arg: string): Promise<string> {
  try {
    const st = await stat(arg);
    return st.isDirectory() ? resolve(arg) : dirname(resolve(arg));
  } catch {
    return hasGlobMagic(arg) ? resolve(splitPattern(arg).base) : dirname(resolve(arg));
  }
}

/** The deepest folder that holds every one of `folders` (absolute paths). */
export function commonBase(folders: readonly string[]): string {
  if (folders.length === 0) return resolve(".");
  let parts = folders[0].split(sep);
  for (const f of folders.slice(1)) {
    const other = f.split(sep);
    let i = 0;
    while (i < parts.length && i < other.length && parts[i] === other[i]) i++;
    parts = parts.slice(0, i);
  }
  return parts.join(sep) || sep;
}

/** `DIR`-relative summary path for a file (absolute path) under `base`. */
export function summaryName(base: string, file: string): string {
  let rel = relative(base, file);
  // Only reachable when the file is not under the base (another drive): keep the whole path, minus its root.
  if (rel === "" || rel.startsWith("..") || isAbsolute(rel)) rel = file.replace(/^([A-Za-z]:)?[\\/]+/, "").replace(/:/g, "");
  return rel + SUMMARY_SUFFIX;
}

function isInside(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

async function ensureFolder(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new UserError(`cannot create the output folder ${dir}: ${errorMessage(e)}`);
  }
  if (!(await stat(dir)).isDirectory()) throw new UserError(`the output path ${dir} is not a folder`);
}

// ---------------------------------------------------------------------------------------------------------------
// Atomic writes and stale temp files

/** `.NAME.PID.RANDOM.tmp`: hidden, and never ending in `.summary.md`, so it cannot be taken for a summary. */
const TEMP_NAME = /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/;

export function tempNameFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
}

/** Writes through a temp file next to the target and renames it over: readers see nothing or the whole file. */
export async function writeFileAtomic(target: string, content: string): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  const temp = tempNameFor(target);
  try {
    const handle = await open(temp, "wx");
    try {
      await handle.writeFile(content, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
  } catch (e) {
    await unlink(temp).catch(() => undefined);
    throw e;
  }
}

/** Deletes temp files that runs killed before their rename left behind (those of live processes stay). */
export async function removeStaleTemps(dir: string): Promise<number> {
  let removed = 0;
  const visit = async (folder: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(folder, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const p = join(folder, entry.name);
      if (entry.isDirectory()) {
        await visit(p);
        continue;
      }
      const m = TEMP_NAME.exec(entry.name);
      if (!m || !entry.isFile() || isAlive(Number(m[1]))) continue;
      await unlink(p).then(
        () => removed++,
        () => undefined,
      );
    }
  };
  await visit(dir);
  return removed;
}

function isAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Prompts

/** Fills `{{document}}` and `{{name}}` in one pass, so that text inside the document is never substituted. */
export function renderTemplate(template: string, values: { document: string; name: string }): string {
  return template.replace(/\{\{\s*(document|name)\s*\}\}/g, (_, key: "document" | "name") => values[key]);
}

export function checkTemplate(template: string): void {
  if (!/\{\{\s*document\s*\}\}/.test(template)) {
    throw new UserError("the prompt template has no {{document}} placeholder, so the document would never reach the model");
  }
}

/**
 * Turns user-turn content into prompt tokens through the model's chat template. Markup of the chat template is
 * tokenized with special tokens recognised; the content (the document) never is, so a document that happens to
 * contain `<|im_end|>` cannot end the turn.
 */
export class PromptBuilder {
  private readonly prefix: string;
  private readonly suffix: string;
  private readonly split: boolean;
  /** Tokens of the markup before the content, BOS included. */
  private readonly head: number[];

  constructor(private readonly model: Model) {
    const marker = "\u2063KVZAP-CONTENT\u2063";
    const { text, templated } = model.formatChat([{ role: "user", content: marker }], true);
    const at = text.indexOf(marker);
    const once = at >= 0 && text.indexOf(marker, at + marker.length) < 0;
    this.prefix = once ? text.slice(0, at) : "";
    this.suffix = once ? text.slice(at + marker.length) : "";
    this.split = templated && once;
    const head = model.tokenize(this.prefix, { addSpecial: true, parseSpecial: true });
    // Templates that write the BOS text themselves (`<s>[INST]`) would otherwise start with two BOS tokens.
    const bos = model.tokenize("", { addSpecial: true, parseSpecial: false });
    if (bos.length === 1 && head.length >= 2 && head[0] === bos[0] && head[1] === bos[0]) head.shift();
    this.head = head;
  }

  build(content: string): number[] {
    if (this.split) {
      return [
        ...this.head,
        ...this.model.tokenize(content, { addSpecial: false, parseSpecial: false }),
        ...this.model.tokenize(this.suffix, { addSpecial: false, parseSpecial: true }),
      ];
    }
    // No chat template: the transcript is plain text. (A template that mangles the marker cannot be split, so its
    // output is taken whole, special tokens and all.)
    const { text, templated } = this.model.formatChat([{ role: "user", content }], true);
    return this.model.tokenize(text, { addSpecial: true, parseSpecial: templated });
  }

  count(text: string): number {
    return this.model.tokenize(text, { addSpecial: false, parseSpecial: false }).length;
  }
}

/** Tokens of document text that fit one call next to the template, the chat markup and the answer. */
function documentBudget(contextSize: number, maxTokens: number, prompts: PromptBuilder, template: string, name: string): number {
  const overhead = prompts.build(renderTemplate(template, { document: "", name })).length;
  return contextSize - maxTokens - overhead - MARGIN_TOKENS;
}

// ---------------------------------------------------------------------------------------------------------------
// One document: whole, or map (one summary per chunk) then reduce (combine, recursively while it does not fit)

interface SummarizeTextOptions {
  template: string;
  name: string;
  maxTokens: number;
  temperature: number;
  seed?: number;
  signal?: AbortSignal;
  /** Updated as calls finish, so that a failure still reports what was spent. */
  counts: { tokensIn: number; tokensOut: number; chunks: number };
  onStep?: (label: string, done: number, total: number) => void;
}

interface Part {
  /** 1-based range of the chunks this summary covers. */
  from: number;
  to: number;
  text: string;
}

export async function summarizeText(engine: Engine, prompts: PromptBuilder, text: string, o: SummarizeTextOptions): Promise<string> {
  const { session } = engine;
  const ctx = session.contextSize;
  let calls = 0;
  let plannedCalls = 1;
  const call = async (document: string, name: string, label: string): Promise<string> => {
    o.onStep?.(label, calls, plannedCalls);
    const tokens = prompts.build(renderTemplate(o.template, { document, name }));
    const r = await session.generate(tokens, {
      maxTokens: o.maxTokens,
      temperature: o.temperature,
      seed: o.seed,
      signal: o.signal,
    });
    o.counts.tokensIn += r.stats.promptTokens;
    o.counts.tokensOut += r.stats.generatedTokens;
    if (r.stopReason === "abort" || o.signal?.aborted) throw new Interrupted();
    calls++;
    return r.text.trim();
  };

  const whole = documentBudget(ctx, o.maxTokens, prompts, o.template, o.name);
  if (prompts.count(text) <= whole) {
    o.counts.chunks = 1;
    return await call(text, o.name, "summarizing");
  }

  const chunkBudget = documentBudget(ctx, o.maxTokens, prompts, o.template, `${o.name} (parts 9999-9999 of 9999)`);
  if (chunkBudget < MIN_PARTS_PER_CALL * (o.maxTokens + LABEL_TOKENS)) {
    throw new UserError(`the prompt template and the file name leave too little of the ${ctx}-token context for the text; raise --ctx`);
  }
  const chunks = splitText(text, chunkBudget, (s) => prompts.count(s));
  const n = chunks.length;
  o.counts.chunks = n;
  plannedCalls = n + 1;
  let parts: Part[] = [];
  for (let i = 0; i < n; i++) {
    const summary = await call(chunks[i], `${o.name} (part ${i + 1} of ${n})`, `part ${i + 1} of ${n}`);
    parts.push({ from: i + 1, to: i + 1, text: summary });
  }

  const label = (p: Part) => (p.from === p.to ? `part ${p.from} of ${n}` : `parts ${p.from}-${p.to} of ${n}`);
  const render = (ps: readonly Part[]) => ps.map((p) => `Summary of ${label(p)}:\n${p.text}`).join("\n\n");
  const groupBudget = chunkBudget;
  for (;;) {
    parts = parts.filter((p) => p.text.length > 0);
    if (parts.length === 0) return "";
    if (parts.length === 1) return parts[0].text;
    if (prompts.count(render(parts)) <= whole) return await call(render(parts), o.name, "combining");
    // Too many partial summaries for one call: combine neighbours in groups that fit, at least two per group so
    // that every round shrinks the list, and go again.
    const groups: Part[][] = [];
    for (const p of parts) {
      const current = groups[groups.length - 1];
      if (current && (current.length < 2 || prompts.count(render([...current, p])) <= groupBudget)) current.push(p);
      else groups.push([p]);
    }
    plannedCalls = calls + groups.filter((g) => g.length > 1).length + 1;
    const next: Part[] = [];
    for (const g of groups) {
      if (g.length === 1) {
        next.push(g[0]);
        continue;
      }
      const range: Part = { from: g[0].from, to: g[g.length - 1].to, text: "" };
      range.text = await call(render(g), `${o.name} (${label(range)})`, `combining ${label(range)}`);
      next.push(range);
    }
    parts = next;
  }
}
