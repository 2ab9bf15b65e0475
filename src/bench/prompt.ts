// Benchmark prompts: real English (attention patterns, and so KVzap's scores, differ on random token ids), cut to an
// exact number of tokens.
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { UserError } from "../base/errors.js";
import { sharedCorporaDir } from "../base/paths.js";
import type { Model } from "../engine/model.js";

/** Sherlock Holmes from the shared corpora, next to the project folder. */
export const DEFAULT_TEXT = path.join(sharedCorporaDir, "gutenberg-sherlock-holmes.txt");

export async function readBenchText(file: string | undefined): Promise<{ path: string; text: string }> {
  const p = path.resolve(file ?? DEFAULT_TEXT);
  let st;
  try {
    st = await stat(p);
  } catch {
    throw new UserError(file === undefined ? `the default benchmark text ${p} is missing; give a text file with --text FILE` : `text file not found: ${p}`);
  }
  if (!st.isFile()) throw new UserError(`not a file: ${p}`);
  const buf = await readFile(p);
  if (buf.includes(0)) throw new UserError(`${p} is not a text file`);
  const text = buf.toString("utf8").replace(/^\uFEFF/, "");
  if (text.trim() === "") throw new UserError(`${p} is empty`);
  return { path: p, text };
}

/**
 * The first `count` tokens of the text (with the model's BOS when it adds one). A text shorter than that is repeated,
 * separated by blank lines: the benchmark needs the length more than it needs the text to be new.
 */
export function promptTokens(model: Model, text: string, count: number): number[] {
  let chars = Math.min(text.length, count * 8);
  for (;;) {
    const slice = text.slice(0, chars);
    const toks = model.tokenize(slice, { addSpecial: true });
    if (toks.length >= count) return toks.slice(0, count);
    if (chars >= text.length) break;
    chars = Math.min(text.length, chars * 2);
  }
  const whole = model.tokenize(text, { addSpecial: true });
  const more = model.tokenize("\n\n" + text, { addSpecial: false });
  if (more.length === 0) throw new UserError("the benchmark text gives no tokens");
  const out = [...whole];
  while (out.length < count) for (const t of more) out.push(t);
  return out.slice(0, count);
}
