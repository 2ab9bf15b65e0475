// Numbers as the chat screen shows them.
export { formatBytes } from "../base/format.js";

/** 5219 -> "5,219". */
export function formatInt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** Tokens per second: "367 tok/s", "12.5 tok/s", "0.8 tok/s". */
export function formatRate(perSecond: number): string {
  if (!Number.isFinite(perSecond) || perSecond <= 0) return "– tok/s";
  return `${perSecond >= 100 ? Math.round(perSecond) : perSecond.toFixed(1)} tok/s`;
}

/** 850 -> "850 ms", 15234 -> "15.2 s", 125000 -> "2 min 5 s". */
export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

export function formatPercent(fraction: number): string {
  if (!Number.isFinite(fraction)) return "–";
  return `${Math.round(fraction * 100)}%`;
}

/** How many terminal rows `text` takes at `columns` wide (wide characters and wrapping at spaces ignored). */
export function wrappedRows(text: string, columns: number): number {
  const width = Math.max(1, columns);
  return text.split("\n").reduce((rows, line) => rows + Math.max(1, Math.ceil([...line].length / width)), 0);
}

/** The end of `text` that fits in `maxRows` rows, and whether anything was cut. */
export function tailRows(text: string, columns: number, maxRows: number): { text: string; cut: boolean } {
  if (wrappedRows(text, columns) <= maxRows) return { text, cut: false };
  const width = Math.max(1, columns);
  const lines = text.split("\n");
  const out: string[] = [];
  let rows = 0;
  for (let i = lines.length - 1; i >= 0 && rows < maxRows; i--) {
    const chars = [...lines[i]];
    const need = Math.max(1, Math.ceil(chars.length / width));
    if (rows + need <= maxRows) {
      out.unshift(lines[i]);
      rows += need;
    } else {
      const keep = (maxRows - rows) * width;
      out.unshift(chars.slice(chars.length - keep).join(""));
      rows = maxRows;
    }
  }
  return { text: out.join("\n"), cut: true };
}
