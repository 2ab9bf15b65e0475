// Seeded randomness for calibration: the same --seed gives the same prompts, samples and initial weights.

/** mulberry32: a tiny, fast generator with a 32-bit state; uniform in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A 32-bit seed derived from a seed and labels, so that independent streams do not share draws. */
export function subSeed(seed: number, ...labels: (string | number)[]): number {
  // FNV-1a over the seed and labels.
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (const label of labels) {
    const s = `|${label}`;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
  }
  return h >>> 0;
}

/** Fisher–Yates shuffle of a copy. */
export function shuffled<T>(items: readonly T[], next: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** `k` distinct integers from [0, n), sorted ascending (all of them when k ≥ n). */
export function sampleIndices(n: number, k: number, next: () => number): number[] {
  if (k >= n) return Array.from({ length: n }, (_, i) => i);
  // Floyd's algorithm: k draws, no array of n.
  const chosen = new Set<number>();
  for (let j = n - k; j < n; j++) {
    const t = Math.floor(next() * (j + 1));
    chosen.add(chosen.has(t) ? j : t);
  }
  return [...chosen].sort((a, b) => a - b);
}

/** A standard normal draw (Box–Muller). */
export function gaussian(next: () => number): number {
  const u = Math.max(next(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * next());
}
