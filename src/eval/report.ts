// The evaluation's summary: rows grouped by (task, length, prefill mode, policy, target) with the mean score and its
// confidence interval (tasks) or the mean KL, top-1 agreement and perplexity (text), the compression reached and the
// speeds; written as a table, CSV and JSON.
import { confidenceInterval } from "./score.js";
import type { Row, TaskRow, TextRow } from "./rows.js";

export interface SummaryRow {
  task: string;
  length: number;
  mode: string;
  policy: string;
  target: number | null;
  n: number;
  /** Tasks: mean score; text: top-1 agreement. */
  accuracy?: number;
  low?: number;
  high?: number;
  kl?: number;
  top1?: number;
  perplexity?: number;
  perplexityFull?: number;
  compression: number;
  bytesCompression: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond?: number;
  param: string;
}

const mean = (xs: readonly number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

function paramText(rows: readonly Row[]): string {
  const p = rows[0].param;
  const avg = (f: (r: Row) => number | undefined) => mean(rows.map(f).filter((x): x is number => x !== undefined));
  if (p.window !== undefined) return `window ${Math.round(avg((r) => r.param.window))}`;
  if (p.keep !== undefined) return `keep ${avg((r) => r.param.keep).toFixed(3)}`;
  if (p.tau !== undefined) return `τ ${avg((r) => r.param.tau).toFixed(2)}`;
  return "";
}

export function summarize(rows: readonly Row[]): SummaryRow[] {
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const task = r.kind === "task" ? r.task : "text";
    const length = r.kind === "task" ? r.length : r.tokens;
    const k = JSON.stringify([
      task,
      length,
      r.mode,
      r.policy,
      r.target,
      r.kind === "task" ? null : null,
      r.policy === "kvzap" && r.target === null ? r.param.tau : null,
    ]);
    const g = groups.get(k) ?? [];
    g.push(r);
    groups.set(k, g);
  }
  const out: SummaryRow[] = [];
  for (const g of groups.values()) {
    const r0 = g[0];
    const base = {
      task: r0.kind === "task" ? r0.task : "text",
      length: r0.kind === "task" ? r0.length : r0.tokens,
      mode: r0.mode,
      policy: r0.policy,
      target: r0.target,
      n: g.length,
      compression: mean(g.map((r) => r.compression)),
      bytesCompression: mean(g.map((r) => r.bytesCompression)),
      prefillTokensPerSecond: mean(g.map((r) => r.prefillTokensPerSecond)),
      param: paramText(g),
    };
    if (r0.kind === "task") {
      const t = g as TaskRow[];
      const ci = confidenceInterval(t.map((r) => r.score));
      out.push({ ...base, accuracy: ci.mean, low: ci.low, high: ci.high, decodeTokensPerSecond: mean(t.map((r) => r.decodeTokensPerSecond)) });
    } else {
      const t = g as TextRow[];
      // perplexity over all continuation tokens of the group: the geometric mean of the segments' (equal lengths)
      const ppl = Math.exp(mean(t.map((r) => Math.log(r.perplexity))));
      const pplFull = Math.exp(mean(t.map((r) => Math.log(r.perplexityFull))));
      out.push({ ...base, kl: mean(t.map((r) => r.kl)), top1: mean(t.map((r) => r.top1)), perplexity: ppl, perplexityFull: pplFull });
    }
  }
  const order = ["full", "kvzap", "window", "random", "oracle"];
  out.sort(
    (a, b) =>
      a.task.localeCompare(b.task) ||
      a.length - b.length ||
      a.mode.localeCompare(b.mode) ||
      (a.target ?? 0) - (b.target ?? 0) ||
      order.indexOf(a.policy) - order.indexOf(b.policy),
  );
  return out;
}

function fmt(x: number | undefined, digits: number): string {
  return x === undefined || !Number.isFinite(x) ? "" : x.toFixed(digits);
}

function columns(rows: readonly SummaryRow[]): { head: string[]; cells: (r: SummaryRow) => string[] } {
  const text = rows.some((r) => r.kl !== undefined);
  const tasks = rows.some((r) => r.accuracy !== undefined);
  const head = ["task", "length", "prefill", "policy", "target", "n"];
  if (tasks) head.push("accuracy", "95% CI");
  if (text) head.push("KL", "top-1", "ppl", "ppl full");
  head.push("compression", "bytes", "setting", "prefill tok/s");
  if (tasks) head.push("decode tok/s");
  return {
    head,
    cells: (r) => {
      const c = [r.task, String(r.length), r.mode, r.policy, r.target === null ? "" : `${r.target}x`, String(r.n)];
      if (tasks)
        c.push(fmt(r.accuracy !== undefined ? r.accuracy * 100 : undefined, 1), r.low !== undefined ? `${fmt(r.low * 100, 0)}–${fmt(r.high! * 100, 0)}` : "");
      if (text) c.push(fmt(r.kl, 4), fmt(r.top1 !== undefined ? r.top1 * 100 : undefined, 1), fmt(r.perplexity, 1), fmt(r.perplexityFull, 1));
      c.push(`${fmt(r.compression, 2)}x`, `${fmt(r.bytesCompression, 2)}x`, r.param, fmt(r.prefillTokensPerSecond, 0));
      if (tasks) c.push(fmt(r.decodeTokensPerSecond, 0));
      return c;
    },
  };
}

export function formatTable(rows: readonly SummaryRow[]): string {
  const { head, cells } = columns(rows);
  const body = rows.map(cells);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (c: string[]) =>
    c
      .map((x, i) => (i < 4 ? x.padEnd(widths[i]) : x.padStart(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

export function toCsv(rows: readonly SummaryRow[]): string {
  const keys: (keyof SummaryRow)[] = [
    "task",
    "length",
    "mode",
    "policy",
    "target",
    "n",
    "accuracy",
    "low",
    "high",
    "kl",
    "top1",
    "perplexity",
    "perplexityFull",
    "compression",
    "bytesCompression",
    "param",
    "prefillTokensPerSecond",
    "decodeTokensPerSecond",
  ];
  const esc = (v: unknown) => {
    const s = v === undefined || v === null ? "" : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [keys.join(","), ...rows.map((r) => keys.map((k) => esc(r[k])).join(","))].join("\n") + "\n";
}
