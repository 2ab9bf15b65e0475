// Summaries of repeated measurements. A shared, noisy machine makes single numbers meaningless: every rate is kept
// with its median and range, and ratios are taken pair by pair (the two runs of one repetition ran back to back, so
// a load spike hits both) before they are summarised.

export interface Summary {
  median: number;
  min: number;
  max: number;
  /** Every measurement, in repetition order. */
  all: number[];
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function summarize(values: readonly number[]): Summary {
  return {
    median: median(values),
    min: values.length ? Math.min(...values) : NaN,
    max: values.length ? Math.max(...values) : NaN,
    all: [...values],
  };
}

/** a[i] / b[i] for each repetition i where both exist and b[i] > 0. */
export function pairRatios(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (b[i] > 0) out.push(a[i] / b[i]);
  return out;
}

/**
 * The order of the variants in repetition `rep`: rotated by one each repetition (A B, B A, A B, …), so that neither
 * variant always runs first (on a warm cache, or right after the other one heated the CPU).
 */
export function rotation<T>(items: readonly T[], rep: number): T[] {
  const k = items.length === 0 ? 0 : rep % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** Rounds for JSON and tables: 4 significant digits is far below the noise of any timing here. */
export function round(x: number, digits = 4): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const p = Math.pow(10, digits - 1 - Math.floor(Math.log10(Math.abs(x))));
  return Math.round(x * p) / p;
}
