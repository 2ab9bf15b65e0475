// DIR/report.jsonl: one line per input ever summarized into DIR, merged over runs. A rerun replaces the line of an
// input it did again and keeps every other line, and the file is replaced whole (temp file + rename) after each input,
// so neither a stopped run nor a killed one can leave it shorter than it was.
import { mkdir, readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { UserError, errorMessage } from "../../base/errors.js";
import { writeFileAtomic } from "../../base/files.js";

export const REPORT_NAME = "report.jsonl";

/** What changes a summary's text; recorded with each summary so a rerun can say when they differ. */
export type SummarySettings = Readonly<Record<string, string | number | boolean | null>>;

/** One line of report.jsonl: what happened to one input the last time it was done. */
export interface ReportEntry {
  /** The input as the user spelled it (or as folder/glob expansion spelled it). */
  path: string;
  status: "ok" | "error" | "skipped";
  /** The summary's path relative to DIR (the folder holding report.jsonl); null when there is none. */
  output: string | null;
  /** One line naming the input and what went wrong; null unless status is "error". */
  error: string | null;
  /** Prompt tokens evaluated for this input, over every model call (chunks and combining). */
  tokensIn: number;
  /** Tokens generated for this input, over every model call. */
  tokensOut: number;
  /** Wall-clock seconds spent on this input. */
  seconds: number;
  /** Pieces the document was cut into to fit the context: 1 when it fit whole, 0 when it was not summarized. */
  chunks: number;
  /** The settings the summary was made with (absent on lines written before they were recorded). */
  settings?: SummarySettings;
  /** The error of a later run that tried to redo this input and failed (its summary and this line stand). */
  lastError?: string | null;
  /** When the line was written (ISO time). */
  at?: string;
}

/** The line's identity across runs: the input's summary name, or its path when it has none. */
function keyOf(e: ReportEntry): string {
  return e.output !== null ? `output:${e.output}` : `path:${e.path}`;
}

export class ReportFile {
  private constructor(
    readonly path: string,
    private readonly entries: Map<string, ReportEntry>,
  ) {}

  /** Reads what earlier runs wrote; a line that does not parse (a file from an older, torn write) is dropped. */
  static async open(path: string): Promise<ReportFile> {
    let text = "";
    try {
      text = await readFile(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new UserError(`cannot read the report ${path}: ${errorMessage(e)}`);
    }
    const entries = new Map<string, ReportEntry>();
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      try {
        const e = JSON.parse(line) as ReportEntry;
        if (typeof e.path === "string" && typeof e.status === "string") entries.set(keyOf(e), e);
      } catch {
        // not a line we can use
      }
    }
    const report = new ReportFile(path, entries);
    // The file exists from the start of the first run, so that a run killed before its first line leaves a report
    // (empty) next to any summary it renamed into place.
    if (text === "" && entries.size === 0) await report.write();
    return report;
  }

  /** The line an earlier run wrote for the summary named `output`. */
  previous(output: string): ReportEntry | undefined {
    return this.entries.get(`output:${output}`);
  }

  /**
   * Records a finished input. A skip keeps the line of the run that made the summary (its tokens, seconds and
   * settings stay true); anything else replaces the input's line. An input that now has a summary drops the error
   * line an earlier run wrote for it.
   */
  async record(entry: ReportEntry, plannedOutput: string | null): Promise<void> {
    if (entry.status === "skipped" && entry.output !== null && this.entries.has(keyOf(entry))) return;
    this.entries.delete(`path:${entry.path}`);
    if (entry.status === "error" && plannedOutput !== null) {
      // A failed redo of an input that has a summary: the summary stays, and so does its line; the error is told.
      const earlier = this.entries.get(`output:${plannedOutput}`);
      if (earlier !== undefined && earlier.status !== "error") {
        this.entries.set(`output:${plannedOutput}`, { ...earlier, lastError: entry.error });
        await this.write();
        return;
      }
    }
    this.entries.set(keyOf(entry), { ...entry, at: new Date().toISOString() });
    await this.write();
  }

  async write(): Promise<void> {
    const text = [...this.entries.values()].map((e) => JSON.stringify(e) + "\n").join("");
    try {
      await mkdir(dirname(this.path), { recursive: true });
      await writeFileAtomic(this.path, Buffer.from(text, "utf8"));
    } catch (e) {
      throw new UserError(`cannot write the report ${this.path}: ${errorMessage(e)}`);
    }
  }
}

/** The settings that differ between an earlier summary and this run, as `name old → new`. */
export function changedSettings(before: SummarySettings | undefined, now: SummarySettings): string[] {
  if (before === undefined) return [];
  const names = new Set([...Object.keys(before), ...Object.keys(now)]);
  const out: string[] = [];
  for (const name of names) {
    const a = before[name] ?? null;
    const b = now[name] ?? null;
    if (a !== b) out.push(`${name} ${a === null ? "(unset)" : String(a)} → ${b === null ? "(unset)" : String(b)}`);
  }
  return out;
}
