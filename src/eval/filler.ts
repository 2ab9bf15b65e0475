// Filler text for the synthetic tasks: sentences of a corpus (the held-out Sherlock Holmes text by default, so that a
// model trained on the other corpora sees text it has not memorised), or of the user's own file.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { UserError } from "../base/errors.js";

export const DEFAULT_FILLER_FILE = "gutenberg-sherlock-holmes.txt";

export function defaultFillerPath(): string {
  return path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..", "..", "shared", "corpora", DEFAULT_FILLER_FILE);
}

/** Splits a text into sentences of at least a few words, whitespace collapsed. */
export function sentences(text: string): string[] {
  const flat = text.replace(/\s+/g, " ").trim();
  const out: string[] = [];
  for (const m of flat.matchAll(/[^.!?]+[.!?]+["')\]]*/g)) {
    const s = m[0].trim();
    if (s.split(" ").length >= 4) out.push(s);
  }
  return out;
}

export async function loadFiller(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new UserError(`cannot read the filler text ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const s = sentences(text);
  if (s.length < 20) throw new UserError(`the filler text ${file} has too few sentences (${s.length}); give a longer text`);
  return s;
}
