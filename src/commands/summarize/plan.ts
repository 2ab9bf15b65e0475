// Which inputs a batch has and what each summary is called. A summary's name depends only on its input (the path
// relative to the folder the command runs in), never on the other arguments, so adding an input to a run never
// renames the summaries a rerun should find.
import { realpath, stat } from "node:fs/promises";
import { isAbsolute, relative, resolve } from "node:path";
import { errorMessage } from "../../base/errors.js";
import { expandInputs } from "../../documents/index.js";

export const SUMMARY_SUFFIX = ".summary.md";

/** An input after expansion: where its summary goes, or why it cannot be used. */
export interface PlannedInput {
  path: string;
  /** Relative to DIR; null when the input could not be expanded. */
  output: string | null;
  /** Set when the argument could not be expanded (missing file, empty folder, pattern with no match, a bad link). */
  problem?: string;
}

export interface PlanOptions {
  /** The folder summary names are relative to; default the current folder. */
  base?: string;
}

/**
 * Expands each argument (files, folders recursively, globs), drops duplicates and documents found inside DIR itself
 * (earlier summaries are Markdown files), and names each summary after the input's path relative to `base`:
 * `reports/q1.pdf` → `reports/q1.pdf.summary.md` (an input outside `base`: its absolute path without the root).
 * Links a folder walk cannot follow (dangling, looping) become inputs with a problem, so the report names them.
 */
export async function planInputs(paths: readonly string[], outDir: string, opts: PlanOptions = {}): Promise<PlannedInput[]> {
  const base = resolve(opts.base ?? ".");
  const outLexical = resolve(outDir);
  const outReal = await realpath(outDir).catch(() => outLexical);
  const seen = new Set<string>();
  const claimed = new Map<string, string>();
  const planned: PlannedInput[] = [];
  for (const arg of paths) {
    let files: string[];
    const skipped: PlannedInput[] = [];
    try {
      files = await expandInputs([arg], { onSkipped: (path, reason) => skipped.push({ path, output: null, problem: `${path}: ${reason}` }) });
    } catch (e) {
      planned.push(...skipped, { path: arg, output: null, problem: describeFailure(arg, e) });
      continue;
    }
    planned.push(...skipped);
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

/** `DIR`-relative summary path for a file (absolute path) under `base`. */
export function summaryName(base: string, file: string): string {
  let rel = relative(base, file);
  // A file outside the base: its whole path, minus its root.
  if (rel === "" || rel.startsWith("..") || isAbsolute(rel)) rel = file.replace(/^([A-Za-z]:)?[\\/]+/, "").replace(/:/g, "");
  return rel + SUMMARY_SUFFIX;
}

export function describeFailure(path: string, e: unknown): string {
  const message = errorMessage(e).split("\n")[0];
  // DocumentError and our own messages already start with the path.
  return message.startsWith(`${path}:`) ? message : `${path}: ${message}`;
}

function isInside(path: string, folder: string): boolean {
  const rel = relative(folder, path);
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel);
}

export async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}
