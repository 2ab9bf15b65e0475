// Comparisons shared by the GPU checks.

/** The largest absolute difference over the largest magnitude of the reference: max|a − b| / max|b|. */
export function maxRelDiff(a, b) {
  let n = 0,
    d = 0;
  for (let i = 0; i < a.length; i++) {
    n = Math.max(n, Math.abs(a[i] - b[i]));
    d = Math.max(d, Math.abs(b[i]));
  }
  return n / d;
}
