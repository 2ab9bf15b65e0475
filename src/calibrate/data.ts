// Calibration data: documents in, prompts of a few hundred to a thousand tokens out, deterministic given the seed.
// Only the prompts that are used get tokenized exactly; the rest of the data is cut by an estimate of characters
// per token, so that megabytes of text cost a second, not a minute.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { UsageError, UserError } from "../base/errors.js";
import { DocumentError, expandInputs, loadDocument, splitText } from "../documents/index.js";
import { sharedCorporaDir } from "../base/paths.js";
import { rng, shuffled, subSeed } from "./rng.js";

/** Held out of the default calibration data: the test-bed model never saw it, and --check measures on it. */
export const HELD_OUT_FILE = "gutenberg-sherlock-holmes.txt";

/** Default prompt length: 750–1250 tokens (the target ± 25%). */
export const DEFAULT_PROMPT_TOKENS = 1000;
export const PROMPT_SPREAD = 0.25;

/** The corpora every checkout has next to it (../shared/corpora). */
export function defaultCorporaDir(): string {
  return sharedCorporaDir;
}

export interface Tokenizer {
  tokenize(text: string, options?: { addSpecial?: boolean; parseSpecial?: boolean }): number[];
}

export interface DataFile {
  path: string;
  sha256: string;
  bytes: number;
  /** Characters of text (0 when skipped). */
  chars: number;
  /** Why the file gave no text (empty, image-only PDF, …). */
  skipped?: string;
}

export interface TextSource {
  path: string;
  text: string;
}

export interface CalibrationData {
  files: DataFile[];
  sources: TextSource[];
}

/**
 * The files to calibrate on and the text held out for --check. Without --data: the shared corpora minus
 * HELD_OUT_FILE, which becomes the check text; no corpora folder is a UsageError asking for --data.
 */
export async function resolveDataPaths(data: readonly string[] | undefined): Promise<{ files: string[]; checkFiles: string[]; isDefault: boolean }> {
  if (data && data.length > 0) return { files: await expandInputs(data), checkFiles: [], isDefault: false };
  const dir = defaultCorporaDir();
  if (!existsSync(dir)) throw new UsageError(`no calibration data: pass --data PATHS (the default folder ${dir} does not exist)`);
  const all = await expandInputs([dir]);
  const held = all.filter((f) => path.basename(f) === HELD_OUT_FILE);
  // The corpora's README describes the files; it is not calibration text.
  const files = all.filter((f) => path.basename(f) !== HELD_OUT_FILE && path.basename(f).toLowerCase() !== "readme.md");
  if (files.length === 0) throw new UsageError(`no calibration data in ${dir}: pass --data PATHS`);
  return { files, checkFiles: held, isDefault: true };
}

/** Reads the documents, hashing each file; files without text are skipped, and no text at all is a UserError. */
export async function readCalibrationData(files: readonly string[]): Promise<CalibrationData> {
  const out: CalibrationData = { files: [], sources: [] };
  for (const file of files) {
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (e) {
      throw new UserError(`cannot read calibration data ${file}: ${(e as Error).message}`);
    }
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    try {
      const doc = await loadDocument(file);
      const text = doc.text.trim();
      if (text.length === 0) throw new DocumentError(file, "empty", "no text");
      out.files.push({ path: file, sha256, bytes: bytes.length, chars: doc.chars });
      out.sources.push({ path: file, text });
    } catch (e) {
      if (!(e instanceof DocumentError) || !["empty", "no_text", "encrypted"].includes(e.code)) throw e;
      out.files.push({ path: file, sha256, bytes: bytes.length, chars: 0, skipped: e.message });
    }
  }
  if (out.sources.length === 0) {
    const why = out.files
      .map((f) => f.skipped)
      .filter(Boolean)
      .slice(0, 3)
      .join("; ");
    throw new UserError(`the calibration data holds no text${why ? ` (${why})` : ""}; give text, Markdown or PDF files with --data`);
  }
  return out;
}

export interface PromptLength {
  /** The typical prompt length; prompts are cut to [min, max]. */
  target: number;
  min: number;
  max: number;
  /** True when the requested length was lowered to fit the context. */
  scaled: boolean;
}

/**
 * Prompt lengths that fit: a prompt of m tokens needs m + overhead + min(m, chunk) + 1 positions (the context, the
 * repeat instruction, one repeated chunk, and room for the last token), which must fit `limit`.
 */
export function promptLength(requested: number, limit: number, overhead: number, chunk = 2048): PromptLength {
  const room = limit - overhead - 1;
  const fit = room / 2 <= chunk ? Math.floor(room / 2) : room - chunk;
  let target = requested;
  let max = Math.round(target * (1 + PROMPT_SPREAD));
  let scaled = false;
  if (max > fit) {
    max = fit;
    target = Math.floor(fit / (1 + PROMPT_SPREAD));
    scaled = true;
  }
  const min = Math.max(1, Math.round(target * (1 - PROMPT_SPREAD)));
  if (fit < 16 || min > max)
    throw new UserError(`the context (${limit} tokens) is too small to calibrate: a prompt and its repetition need at least ${2 * 16 + overhead + 1}`);
  return { target, min, max, scaled };
}

export interface CalibrationPrompt {
  /** sha256 (hex, 16 digits) of the prompt's text: its name in the oracle cache. */
  id: string;
  /** The data file it comes from. */
  file: string;
  /** Character offsets in that file's text. */
  start: number;
  end: number;
  text: string;
  /** The text's tokens without BOS or other special tokens. */
  tokens: number[];
}

interface Candidate {
  source: number;
  start: number;
  end: number;
}

/** Cut points after each separator of the first kind that splits the span, most natural first. */
const BOUNDARIES: readonly RegExp[] = [/\n[^\S\n]*\n\s*/g, /[.!?\u2026]+["'\u201d\u2019)\]]*\s+/g, /\n/g, /\s+/g];

/** Spans of at most `maxChars` characters (where a boundary allows) that tile [start, end). */
function units(text: string, start: number, end: number, maxChars: number, level = 0, out: [number, number][] = []): [number, number][] {
  if (end - start <= maxChars) {
    out.push([start, end]);
    return out;
  }
  for (let l = level; l < BOUNDARIES.length; l++) {
    const re = new RegExp(BOUNDARIES[l].source, "g");
    const cuts: number[] = [];
    const slice = text.slice(start, end);
    for (const m of slice.matchAll(re)) {
      const cut = start + m.index + m[0].length;
      if (cut > start && cut < end) cuts.push(cut);
    }
    if (cuts.length === 0) continue;
    let from = start;
    for (const cut of [...cuts, end]) {
      units(text, from, cut, maxChars, l + 1, out);
      from = cut;
    }
    return out;
  }
  for (let s = start; s < end; s += maxChars) out.push([s, Math.min(end, s + maxChars)]);
  return out;
}

/** Characters per token of a text, from up to three slices spread over it. */
function charsPerToken(text: string, tokenizer: Tokenizer): number {
  const slice = 6000;
  const starts = text.length <= 3 * slice ? [0] : [0, Math.floor(text.length / 2), text.length - slice];
  let chars = 0;
  let tokens = 0;
  for (const s of starts) {
    const part = text.slice(s, s + (text.length <= 3 * slice ? text.length : slice));
    chars += part.length;
    tokens += tokenizer.tokenize(part, { addSpecial: false }).length;
  }
  return tokens > 0 ? chars / tokens : 4;
}

/**
 * Every prompt-sized piece of the data, cut at paragraph (else sentence, line, word) boundaries with lengths drawn
 * between the length's min and max, by the estimate of characters per token.
 */
function candidates(sources: readonly TextSource[], tokenizer: Tokenizer, len: PromptLength, seed: number): Candidate[] {
  const out: Candidate[] = [];
  sources.forEach((src, si) => {
    const cpt = charsPerToken(src.text, tokenizer);
    const next = rng(subSeed(seed, "cut", si));
    const draw = () => len.min + next() * (len.max - len.min);
    const pieces = units(src.text, 0, src.text.length, Math.max(16, Math.floor((cpt * len.min) / 4)));
    let start = -1;
    let tokens = 0;
    let want = draw();
    for (const [s, e] of pieces) {
      const t = (e - s) / cpt;
      if (start < 0) {
        start = s;
        tokens = 0;
      } else if (tokens + t > len.max * 0.98) {
        if (tokens >= len.min) out.push({ source: si, start, end: s });
        start = s;
        tokens = 0;
        want = draw();
      }
      tokens += t;
      if (tokens >= want) {
        out.push({ source: si, start, end: e });
        start = -1;
        want = draw();
      }
    }
    if (start >= 0 && tokens >= len.min) out.push({ source: si, start, end: src.text.length });
  });
  return out;
}

export interface PromptSelection {
  prompts: CalibrationPrompt[];
  /** How many prompt-sized pieces the data holds (an estimate, from the characters per token). */
  available: number;
}

/**
 * `count` prompts of the data (and up to `extra` more where the data has them), in a seeded random order over all
 * files; each is tokenized and checked to lie in
 * [len.min, len.max] (a longer one is cut at a boundary, a shorter one passed over). Too little data is a UserError
 * naming what it holds.
 */
export function selectPrompts(
  data: Pick<CalibrationData, "sources">,
  tokenizer: Tokenizer,
  len: PromptLength,
  count: number,
  seed: number,
  extra = 0,
): PromptSelection {
  const all = candidates(data.sources, tokenizer, len, seed);
  const tooFew = (n: number) =>
    new UserError(
      `the data holds ${n} prompt${n === 1 ? "" : "s"} of ~${len.target} tokens, --prompts asks for ${count}; give more text with --data, or fewer --prompts or --prompt-tokens`,
    );
  if (all.length < count) throw tooFew(all.length);
  const order = shuffled(all, rng(subSeed(seed, "order")));
  const prompts: CalibrationPrompt[] = [];
  const count1 = (s: string) => tokenizer.tokenize(s, { addSpecial: false }).length;
  for (const c of order) {
    if (prompts.length === count + extra) break;
    const src = data.sources[c.source];
    let raw = src.text.slice(c.start, c.end);
    let tokens = tokenizer.tokenize(raw.trim(), { addSpecial: false });
    if (tokens.length > len.max) {
      raw = splitText(raw, len.max, (s) => count1(s.trim()))[0];
      tokens = tokenizer.tokenize(raw.trim(), { addSpecial: false });
    }
    if (tokens.length < len.min || tokens.length > len.max) continue;
    const lead = raw.length - raw.trimStart().length;
    const text = raw.trim();
    const start = c.start + lead;
    prompts.push({ id: promptId(text), file: src.path, start, end: start + text.length, text, tokens });
  }
  if (prompts.length < count) throw tooFew(prompts.length);
  return { prompts, available: all.length };
}

export function promptId(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}
