// Part summaries of a long input, kept while the input is in progress so a stopped run resumes inside it. One file per
// input under DIR/.kvzap-parts/, one appended and synced line per finished model call, keyed by a hash of everything
// the call's answer depends on (the settings and the exact prompt); deleted once the input's summary is written.
import { createHash } from "node:crypto";
import { mkdir, open, readFile, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { SummarySettings } from "./report.js";

export const PARTS_FOLDER = ".kvzap-parts";

export class PartCache {
  private constructor(
    private readonly file: string,
    private readonly settingsKey: string,
    private readonly answers: Map<string, string>,
  ) {}

  static async open(outDir: string, output: string, settings: SummarySettings): Promise<PartCache> {
    const file = join(outDir, PARTS_FOLDER, `${output}.parts.jsonl`);
    const answers = new Map<string, string>();
    const text = await readFile(file, "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      try {
        const { key, text: answer } = JSON.parse(line) as { key?: unknown; text?: unknown };
        if (typeof key === "string" && typeof answer === "string") answers.set(key, answer);
      } catch {
        // the torn last line of a killed run
      }
    }
    const settingsKey = JSON.stringify(Object.entries(settings).sort(([a], [b]) => (a < b ? -1 : 1)));
    return new PartCache(file, settingsKey, answers);
  }

  /** Answers kept from earlier runs. */
  get size(): number {
    return this.answers.size;
  }

  keyFor(prompt: string): string {
    return createHash("sha256").update(this.settingsKey).update("\0").update(prompt).digest("hex");
  }

  get(key: string): string | undefined {
    return this.answers.get(key);
  }

  async put(key: string, answer: string): Promise<void> {
    this.answers.set(key, answer);
    await mkdir(dirname(this.file), { recursive: true });
    const handle = await open(this.file, "a");
    try {
      // One write per line: a kill leaves at most a torn last line, which the next run skips.
      await handle.write(JSON.stringify({ key, text: answer }) + "\n");
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  async discard(): Promise<void> {
    await rm(this.file, { force: true });
  }
}
