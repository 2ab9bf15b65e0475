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
 *
 * The text is tokenized a piece at a time (pieces of about 16k characters ending at a blank line), never whole:
 * llama.cpp's SentencePiece tokenizer takes time quadratic in the length of one call on a vocabulary without merges
 * (the random-weight benchmark models': 37 s for the 580k characters of the default text, 1.3 s for 131k), and a
 * 128k-token prompt needs only its first part anyway.
 */
export function promptTokens(model: Model, text: string, count: number): number[] {
  const out: number[] = [];
  for (let pass = 0; out.length < count; pass++) {
    const before = out.length;
    for (const piece of pieces(pass === 0 ? text : "\n\n" + text)) {
      const toks = model.tokenize(piece, { addSpecial: out.length === 0 });
      for (const t of toks) out.push(t);
      if (out.length >= count) break;
    }
    if (out.length === before) throw new UserError("the benchmark text gives no tokens");
  }
  return out.slice(0, count);
}

const PIECE_CHARS = 16384;

/** The text cut after the last blank line before every PIECE_CHARS characters (or at PIECE_CHARS when it has none). */
function* pieces(text: string): Generator<string> {
  for (let i = 0; i < text.length;) {
    let end = Math.min(text.length, i + PIECE_CHARS);
    if (end < text.length) {
      const blank = text.lastIndexOf("\n\n", end);
      if (blank > i) end = blank + 2;
    }
    yield text.slice(i, end);
    i = end;
  }
}
