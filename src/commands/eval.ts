// kvzap eval: task accuracy (generated RULER-style tasks or a tasks file) or the model-agnostic text measure, for each
// policy at each compression and prefill mode; rows are appended to DIR/rows.jsonl as they are made (a stopped run
// resumes), and DIR gets eval.json, eval.csv and the plots.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { UserError } from "../base/errors.js";
import type { Model } from "../engine/model.js";
import type { Profile } from "../profiles/profile.js";
import { loadFiller } from "../eval/filler.js";
import type { EvalPolicy } from "../eval/policies.js";
import { seriesOf, svgPlot, terminalChart } from "../eval/plot.js";
import type { TemplateMode } from "../eval/prompt.js";
import { formatTable, summarize, toCsv, type SummaryRow } from "../eval/report.js";
import { ROWS_FILE, readRows, type Row, type TaskRow, type TextRow } from "../eval/rows.js";
import type { PrefillMode } from "../eval/runs.js";
import { runTask, taskPromptSha } from "../eval/run-tasks.js";
import { runSegment } from "../eval/run-text.js";
import { generateTask, type EvalTask, type NeedleFormat, type TaskKind } from "../eval/tasks.js";
import { tasksToJsonl } from "../eval/tasks-file.js";
import { writeFileAtomic } from "../base/files.js";

export interface EvalOptions {
  model: Model;
  profile?: Profile;
  out: string;
  policies: EvalPolicy[];
  targets: number[];
  taus?: number[];
  tauFrom: "prompt" | "table";
  modes: PrefillMode[];
  batch: number;
  window: number;
  seed: number;
  threads?: number;
  /** Tasks: generated (kinds × lengths × samples, filler from `filler`) or given. */
  tasks?: { kinds: TaskKind[]; lengths: number[]; samples: number; filler: string; format: NeedleFormat } | { file: EvalTask[] };
  template: TemplateMode;
  /** Text measure: `samples` segments of `lengths[i]` tokens, the last `continuation` teacher-forced. */
  text?: { file: string; lengths: number[]; samples: number; continuation: number };
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  /** Notes for the person (skipped policies and why). */
  onNote?: (note: string) => void;
}

export interface EvalResult {
  summary: SummaryRow[];
  rows: Row[];
  interrupted: boolean;
  files: string[];
  table: string;
  chart: string;
}

export async function evaluate(o: EvalOptions): Promise<EvalResult> {
  await mkdir(o.out, { recursive: true });
  const rowsFile = path.join(o.out, ROWS_FILE);
  const previous = await readRows(rowsFile);
  const kvzapRuns = o.policies.includes("kvzap") && o.profile !== undefined;
  if (o.policies.includes("kvzap") && !o.profile)
    o.onNote?.("kvzap skipped: no KVzap profile matches this model (give one with --profile); the baselines are set to the target compressions");
  if (o.profile && o.tauFrom === "table" && o.profile.manifest.tauTable.length === 0)
    throw new UserError("the profile has no τ table: use --tau-from prompt or --taus");
  const identity = JSON.stringify({
    model: path.basename(o.model.path),
    size: o.model.info.sizeBytes,
    profile: o.profile?.manifest.name ?? null,
    profileTau: o.profile?.manifest.tau ?? null,
    template: o.template,
  });
  const perPoint = (kvzapRuns ? 1 : 0) + o.policies.filter((p) => p === "window" || p === "random" || p === "oracle").length;
  const points = kvzapRuns && o.taus ? o.taus.length : o.targets.length;
  const perUnit = (o.policies.includes("full") ? 1 : 0) + perPoint * points;
  const plan = {
    policies: o.policies,
    targets: o.targets,
    taus: o.taus,
    tauFrom: o.tauFrom,
    profile: o.profile,
    window: o.window,
    seed: o.seed,
    decodeEviction: false,
    threads: o.threads,
  };
  let total = 0;
  const files: string[] = [];
  let taskList: { task: EvalTask; sha: string }[] = [];
  const used = new Set<string>();

  if (o.text) {
    const done = new Map<string, TextRow>(previous.filter((r): r is TextRow => r.kind === "text").map((r) => [r.key, r]));
    const text = await readFile(o.text.file, "utf8").catch((e: NodeJS.ErrnoException) => {
      throw new UserError(`cannot read ${o.text!.file}: ${e.code ?? String(e)}`);
    });
    const all = o.model.tokenize(text, { addSpecial: false });
    const bos = o.model.info.addBos ? [o.model.info.bos] : [];
    const segments: { k: number; tokens: number[] }[] = [];
    for (const len of o.text.lengths) {
      const body = len - bos.length;
      if (o.text.continuation >= len - 1) throw new UserError(`--continuation (${o.text.continuation}) must be shorter than the length (${len})`);
      if (all.length < body) throw new UserError(`${o.text.file} holds ${all.length} tokens, fewer than the length ${len}`);
      for (let k = 0; k < o.text.samples; k++) {
        const start = Math.floor(((k + 0.5) * (all.length - body)) / o.text.samples);
        const tokens = [...bos, ...all.slice(start, start + body)];
        segments.push({ k, tokens });
      }
    }
    total = segments.length * o.modes.length * perUnit;
    const onRow = () => {
      // rows found made by an earlier run count as done
      o.onProgress?.(Math.min(used.size, total), total);
    };
    for (const s of segments) {
      if (o.signal?.aborted) break;
      await runSegment(o.model, s.k, s.tokens, {
        ...plan,
        modes: o.modes,
        batch: o.batch,
        continuation: o.text.continuation,
        rowsFile,
        done,
        identity,
        used,
        onRow,
        signal: o.signal,
      });
    }
  } else if (o.tasks) {
    const done = new Map<string, TaskRow>(previous.filter((r): r is TaskRow => r.kind === "task").map((r) => [r.key, r]));
    let tasks: EvalTask[];
    if ("file" in o.tasks) tasks = o.tasks.file;
    else {
      const filler = await loadFiller(o.tasks.filler);
      const count = (t: string) => o.model.tokenize(t, { addSpecial: false }).length;
      tasks = [];
      for (const kind of o.tasks.kinds)
        for (const len of o.tasks.lengths)
          for (let i = 0; i < o.tasks.samples; i++) tasks.push(generateTask(kind, len, i, o.seed, filler, count, o.tasks.format));
    }
    taskList = tasks.map((task) => ({ task, sha: taskPromptSha(o.model, task, o.template).sha }));
    const ctx = o.model.info.contextLength > 0 ? o.model.info.contextLength : Infinity;
    for (const { task } of taskList) {
      const n = taskPromptSha(o.model, task, o.template).tokens.length;
      if (n + task.maxNewTokens >= ctx)
        throw new UserError(`task ${task.id} is ${n} tokens; with ${task.maxNewTokens} to generate it does not fit the model's ${ctx}-token context`);
    }
    await writeFileAtomic(path.join(o.out, "tasks.jsonl"), Buffer.from(tasksToJsonl(tasks)));
    total = tasks.length * o.modes.length * perUnit;
    const onRow = () => {
      // rows found made by an earlier run count as done
      o.onProgress?.(Math.min(used.size, total), total);
    };
    for (const { task } of taskList) {
      if (o.signal?.aborted) break;
      await runTask(o.model, task, { ...plan, modes: o.modes, batch: o.batch, template: o.template, rowsFile, done, identity, used, onRow, signal: o.signal });
    }
  } else {
    throw new UserError("nothing to evaluate: give --tasks, --tasks-file or --text");
  }

  // this run's rows: what it made and what an earlier run made for the same prompts and settings
  const current = await readRows(rowsFile);
  const rows = selectRows(current, used);
  const summary = summarize(rows);
  const table = formatTable(summary);
  const chart = charts(summary, o);
  const json = {
    model: o.model.path,
    profile: o.profile ? { name: o.profile.manifest.name, tau: o.profile.manifest.tau, window: o.profile.manifest.window } : null,
    settings: {
      policies: o.policies,
      targets: o.targets,
      taus: o.taus ?? null,
      tauFrom: o.tauFrom,
      prefill: o.modes,
      batch: o.batch,
      window: o.window,
      seed: o.seed,
      template: o.template,
      text: o.text ?? null,
      decodeEviction: o.text ? true : false,
    },
    tasks: taskList.map(({ task, sha }) => ({ id: task.id, task: task.task, length: task.length, answers: task.answers, promptSha256: sha })),
    summary,
    rows,
  };
  const jsonFile = path.join(o.out, "eval.json");
  const csvFile = path.join(o.out, "eval.csv");
  await writeFileAtomic(jsonFile, Buffer.from(JSON.stringify(json, null, 2) + "\n"));
  await writeFileAtomic(csvFile, Buffer.from(toCsv(summary)));
  files.push(jsonFile, csvFile, ...(await writePlots(summary, o)));
  return { summary, rows, interrupted: Boolean(o.signal?.aborted), files, table, chart };
}

function selectRows(rows: Row[], used: Set<string>): Row[] {
  // the last row of each key wins; rows of other prompts or settings in DIR (an earlier run with other flags) stay out
  const byKey = new Map<string, Row>();
  for (const r of rows) if (used.has(r.key)) byKey.set(r.key, r);
  return [...byKey.values()];
}

function metricsOf(o: EvalOptions): { name: string; label: string; get: (r: SummaryRow) => number | undefined; zero: boolean }[] {
  if (o.text) {
    return [
      { name: "kl", label: "KL to the full cache (nats/token)", get: (r) => r.kl, zero: true },
      { name: "top1", label: "top-1 agreement with the full cache (%)", get: (r) => (r.top1 === undefined ? undefined : r.top1 * 100), zero: false },
      { name: "perplexity", label: "perplexity", get: (r) => r.perplexity, zero: false },
    ];
  }
  return [{ name: "accuracy", label: "accuracy (%)", get: (r) => (r.accuracy === undefined ? undefined : r.accuracy * 100), zero: true }];
}

async function writePlots(summary: SummaryRow[], o: EvalOptions): Promise<string[]> {
  const files: string[] = [];
  for (const mode of o.modes) {
    const rows = summary.filter((r) => r.mode === mode);
    for (const m of metricsOf(o)) {
      const series = seriesOf(rows, m.get);
      if (series.length === 0) continue;
      const file = path.join(o.out, `${m.name}-${mode}.svg`);
      const title = `${path.basename(o.model.path)}: ${m.label.replace(/ \(.*\)$/, "")} against compression (${mode} prefill)`;
      await writeFile(file, svgPlot(series, { title, xLabel: "compression (full-cache KV pairs / pairs held)", yLabel: m.label, zeroY: m.zero }));
      files.push(file);
    }
  }
  return files;
}

function charts(summary: SummaryRow[], o: EvalOptions): string {
  const out: string[] = [];
  for (const mode of o.modes) {
    const m = metricsOf(o)[0];
    const series = seriesOf(
      summary.filter((r) => r.mode === mode),
      m.get,
    );
    const c = terminalChart(series, { yLabel: `${m.label}, ${mode} prefill`, zeroY: m.zero });
    if (c) out.push(c);
  }
  return out.join("\n\n");
}
