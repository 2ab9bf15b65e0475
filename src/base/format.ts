// Numbers for people. Sizes use binary units throughout (KiB, MiB, GiB: 1 MiB = 1024² bytes).

/** Human-readable byte counts: 1536 -> "1.50 KiB", 5 * 1024² -> "5.00 MiB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[i]}`;
}

/** Bytes in MiB with two decimals, for tables and JSON that want one fixed unit. */
export function toMiB(bytes: number): number {
  return Math.round((bytes / 2 ** 20) * 100) / 100;
}

/** 28_300_000 -> "28.3M". */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

/** Aligned two-column "key  value" lines. */
export function formatPairs(pairs: [string, string][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join("\n");
}
