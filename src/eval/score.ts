// RULER's scoring: an answer counts when it occurs in the output, case-insensitively ("all": the share of the
// answers found; "part": 1 when any is found), and a confidence interval for a mean of such scores.
import type { Metric } from "./tasks.js";

export function scoreOutput(output: string, answers: readonly string[], metric: Metric): number {
  if (answers.length === 0) return 0;
  const out = output.toLowerCase();
  const found = answers.map((a) => out.includes(a.toLowerCase()));
  if (metric === "part") return found.some(Boolean) ? 1 : 0;
  return found.filter(Boolean).length / answers.length;
}

/**
 * A 95% interval for the mean of scores in [0, 1]: Wilson's score interval on the mean (exact for 0/1 scores,
 * a close and never-degenerate bound for fractional ones).
 */
export function confidenceInterval(scores: readonly number[], z = 1.96): { mean: number; low: number; high: number } {
  const n = scores.length;
  if (n === 0) return { mean: NaN, low: NaN, high: NaN };
  const p = scores.reduce((a, b) => a + b, 0) / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return { mean: p, low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}
