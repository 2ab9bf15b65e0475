export interface SplitOptions {
  /**
   * Tokens of the previous chunk's end to repeat at the start of the next one (taken from a word boundary), so that
   * a fact cut at a boundary is seen whole at least once. Counted inside maxTokens. Default 0.
   */
  overlapTokens?: number;
}

interface Piece {
  text: string;
  tokens: number;
}

/** Boundaries from the most to the least natural; each cut falls after its separator. */
const BOUNDARIES: readonly RegExp[] = [
  /\n[^\S\n]*\n\s*/g, // paragraphs: a blank line
  /[.!?\u2026]+["'\u201d\u2019)\]]*\s+/g, // sentences
  /\n/g, // lines
  /\s+/g, // words
];

/** Extra exact counts allowed per chunk when the summed estimate says "full" but the real count may not be. */
const MAX_EXACT_PROBES = 16;

/**
 * Splits text into chunks of at most `maxTokens` tokens each (as measured by `countTokens` on the chunk itself), for
 * work on documents longer than the context. Cuts fall on paragraph boundaries where possible, then sentences, lines
 * and words, and only then inside a word. Chunks are in order; without overlap, `chunks.join("") === text` (the
 * whitespace of a boundary stays at the end of the chunk before it). With `overlapTokens`, chunk i > 0 starts with
 * the tail of chunk i - 1's own text, and what follows that prefix continues the text exactly.
 *
 * `countTokens` need not be additive (real tokenizers merge across boundaries): every chunk is checked as a whole.
 * Throws a RangeError for impossible limits, including a single character that alone exceeds the budget.
 */
export function splitText(text: string, maxTokens: number, countTokens: (s: string) => number, opts: SplitOptions = {}): string[] {
  const overlap = opts.overlapTokens ?? 0;
  if (!Number.isInteger(maxTokens) || maxTokens < 1) {
    throw new RangeError(`maxTokens must be a positive integer, got ${maxTokens}`);
  }
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= maxTokens) {
    throw new RangeError(`overlapTokens must be an integer from 0 to maxTokens - 1 (${maxTokens - 1}), got ${overlap}`);
  }
  if (text.length === 0) return [];

  const budget = maxTokens - overlap;
  const pieces: Piece[] = [];
  atomize(text, 0, budget, countTokens, pieces);
  const cores = pack(pieces, budget, countTokens);
  return overlap === 0 ? cores : withOverlap(cores, overlap, maxTokens, countTokens);
}

/** Cuts `segment` into pieces of at most `budget` tokens each, at the most natural boundaries that achieve it. */
function atomize(segment: string, level: number, budget: number, count: (s: string) => number, out: Piece[]): void {
  const tokens = count(segment);
  if (tokens <= budget) {
    out.push({ text: segment, tokens });
    return;
  }
  for (let l = level; l < BOUNDARIES.length; l++) {
    const parts = cutAfter(segment, BOUNDARIES[l]);
    if (parts.length > 1) {
      for (const part of parts) atomize(part, l + 1, budget, count, out);
      return;
    }
  }
  hardSplit(segment, budget, count, out);
}

function cutAfter(segment: string, boundary: RegExp): string[] {
  const parts: string[] = [];
  let last = 0;
  for (const m of segment.matchAll(boundary)) {
    const cut = m.index + m[0].length;
    if (cut > last && cut < segment.length) {
      parts.push(segment.slice(last, cut));
      last = cut;
    }
  }
  parts.push(segment.slice(last));
  return parts;
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

/** Moves a cut back so that it never separates the two halves of a surrogate pair. */
function snap(s: string, i: number): number {
  return i > 0 && i < s.length && isHighSurrogate(s.charCodeAt(i - 1)) ? i - 1 : i;
}

/** The longest prefixes that fit, found by doubling then bisection (tokenizers are monotone enough for this). */
function hardSplit(segment: string, budget: number, count: (s: string) => number, out: Piece[]): void {
  let rest = segment;
  while (rest.length > 0) {
    const restTokens = count(rest);
    if (restTokens <= budget) {
      out.push({ text: rest, tokens: restTokens });
      return;
    }
    let good = isHighSurrogate(rest.charCodeAt(0)) && rest.length > 1 ? 2 : 1;
    let goodTokens = count(rest.slice(0, good));
    if (goodTokens > budget) {
      const char = JSON.stringify(rest.slice(0, good));
      throw new RangeError(`cannot split the text: the single character ${char} counts ${goodTokens} tokens, ` + `more than the ${budget} allowed per chunk`);
    }
    let bad = rest.length; // known not to fit
    for (let probe = good * 2; probe < bad; probe *= 2) {
      const at = snap(rest, probe);
      if (at <= good) continue;
      const n = count(rest.slice(0, at));
      if (n > budget) {
        bad = at;
        break;
      }
      good = at;
      goodTokens = n;
    }
    while (bad - good > 1) {
      const at = snap(rest, (good + bad) >> 1);
      if (at <= good) break;
      const n = count(rest.slice(0, at));
      if (n <= budget) {
        good = at;
        goodTokens = n;
      } else {
        bad = at;
      }
    }
    out.push({ text: rest.slice(0, good), tokens: goodTokens });
    rest = rest.slice(good);
  }
}

/**
 * Greedy packing: pieces are added while the summed counts fit; at the limit one exact count of the candidate
 * decides (merging usually saves tokens), and a chunk built on estimates is verified and trimmed before it is kept.
 */
function pack(pieces: readonly Piece[], budget: number, count: (s: string) => number): string[] {
  const chunks: string[] = [];
  let i = 0;
  while (i < pieces.length) {
    const start = i;
    let end = i + 1;
    let text = pieces[i].text;
    let estimate = pieces[i].tokens;
    let exact = true;
    let probes = 0;
    while (end < pieces.length) {
      const next = pieces[end];
      if (estimate + next.tokens <= budget) {
        text += next.text;
        estimate += next.tokens;
        exact = false;
        end++;
        continue;
      }
      if (probes++ >= MAX_EXACT_PROBES) break;
      const n = count(text + next.text);
      if (n > budget) break;
      text += next.text;
      estimate = n;
      exact = true;
      end++;
    }
    if (!exact) {
      let n = count(text);
      while (n > budget && end - start > 1) {
        end--;
        text = text.slice(0, text.length - pieces[end].text.length);
        n = count(text);
      }
    }
    chunks.push(text);
    i = end;
  }
  return chunks;
}

function withOverlap(cores: readonly string[], overlap: number, maxTokens: number, count: (s: string) => number): string[] {
  const chunks = [cores[0]];
  for (let i = 1; i < cores.length; i++) {
    const starts = wordStarts(cores[i - 1]);
    let from = tailStart(cores[i - 1], starts, overlap, count);
    let chunk = cores[i - 1].slice(from) + cores[i];
    // The joint can tokenize worse than its halves; give up prefix words until the whole fits.
    while (from < cores[i - 1].length && count(chunk) > maxTokens) {
      const nextStart = starts.find((s) => s > from);
      from = nextStart ?? cores[i - 1].length;
      chunk = cores[i - 1].slice(from) + cores[i];
    }
    chunks.push(chunk);
  }
  return chunks;
}

/** Offsets where a word starts: 0 and every non-space character that follows whitespace. */
function wordStarts(s: string): number[] {
  const starts: number[] = [];
  for (const m of s.matchAll(/(?:^|\s)(?=\S)/g)) starts.push(m.index + m[0].length);
  return starts;
}

/** The earliest word start whose suffix fits in `overlap` tokens, or s.length (no overlap) when none does. */
function tailStart(s: string, starts: readonly number[], overlap: number, count: (s: string) => number): number {
  let lo = 0;
  let hi = starts.length; // starts[hi..] fit, as far as we know; hi === length means "none yet"
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (count(s.slice(starts[mid])) <= overlap) hi = mid;
    else lo = mid + 1;
  }
  return hi < starts.length ? starts[hi] : s.length;
}
