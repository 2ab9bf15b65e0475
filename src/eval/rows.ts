// What an evaluation records: one row per (prompt, prefill mode, policy, target), appended to DIR/rows.jsonl as it
// is made, so that a stopped run resumes where it stopped.
import { createHash } from "node:crypto";
import { appendFile, readFile } from "node:fs/promises";
import type { PrefillMode } from "./runs.js";
import type { EvalPolicy } from "./policies.js";

export const ROWS_FILE = "rows.jsonl";

interface RowBase {
  /** Identifies the row across runs: the prompt's hash and everything that decides the run. */
  key: string;
  /** sha256 of the prompt's token ids (the JSON list). */
  promptSha256: string;
  mode: PrefillMode;
  policy: EvalPolicy;
  target: number | null;
  param: { tau?: number; window?: number; keep?: number };
  tokens: number;
  /** Full-cache pairs over pairs held, per (layer, KV head), at the end. */
  compression: number;
  bytesCompression: number;
  pairsPerHead: number;
  prefillTokensPerSecond: number;
  seconds: number;
}

export interface TaskRow extends RowBase {
  kind: "task";
  id: string;
  task: string;
  length: number;
  score: number;
  output: string;
  decodeTokensPerSecond: number;
}

export interface TextRow extends RowBase {
  kind: "text";
  segment: number;
  continuation: number;
  perplexity: number;
  perplexityFull: number;
  /** Mean KL(full ‖ policy) of the next-token distributions over the continuation, nats. */
  kl: number;
  top1: number;
}

export type Row = TaskRow | TextRow;

export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

export function rowKey(parts: Record<string, unknown>): string {
  return sha256(JSON.stringify(parts)).slice(0, 24);
}

export async function readRows(file: string): Promise<Row[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    return [];
  }
  const rows: Row[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      rows.push(JSON.parse(line) as Row);
    } catch {
      // a line cut short by a stopped run: that row is made again
    }
  }
  return rows;
}

export async function appendRow(file: string, row: Row): Promise<void> {
  await appendFile(file, JSON.stringify(row) + "\n");
}

/** Where a run keeps its rows: the rows file, the rows made so far (this run and earlier ones), the keys this run used. */
export interface RowSink<R extends Row> {
  rowsFile: string;
  done: Map<string, R>;
  used: Set<string>;
  onRow?: (row: R) => void;
}

/** Appends a new row to the file and the run's tables, and tells the caller. */
export async function recordRow<R extends Row>(o: RowSink<R>, row: R): Promise<{ pairsPerHead: number }> {
  await appendRow(o.rowsFile, row);
  o.done.set(row.key, row);
  o.used.add(row.key);
  o.onRow?.(row);
  return { pairsPerHead: row.pairsPerHead };
}

/** A row an earlier run made for this key (marked as used by this run), or undefined. */
export function reuseRow<R extends Row>(o: RowSink<R>, key: string): { pairsPerHead: number } | undefined {
  const r = o.done.get(key);
  if (r) o.used.add(r.key);
  return r ? { pairsPerHead: r.pairsPerHead } : undefined;
}
