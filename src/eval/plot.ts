// Accuracy (or KL, top-1, perplexity) against compression, one line per policy: an SVG file of our own (a few dozen
// lines do what a plotting library would, with no dependency or browser) and a compact chart for the terminal.
import type { SummaryRow } from "./report.js";

export interface Series {
  policy: string;
  points: { x: number; y: number }[];
}

const COLORS: Record<string, string> = { full: "#444444", kvzap: "#d62728", window: "#1f77b4", random: "#7f7f7f", oracle: "#2ca02c" };
const LETTERS: Record<string, string> = { full: "F", kvzap: "K", window: "W", random: "R", oracle: "O" };

/** Per policy, the metric averaged over the rows at each target (full: one point at 1x). */
export function seriesOf(rows: readonly SummaryRow[], metric: (r: SummaryRow) => number | undefined): Series[] {
  const by = new Map<string, Map<string, { xs: number[]; ys: number[] }>>();
  for (const r of rows) {
    const y = metric(r);
    if (y === undefined || !Number.isFinite(y)) continue;
    const m = by.get(r.policy) ?? new Map();
    const k = String(r.target ?? r.param);
    const e = m.get(k) ?? { xs: [], ys: [] };
    e.xs.push(r.compression);
    e.ys.push(y);
    m.set(k, e);
    by.set(r.policy, m);
  }
  const avg = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const out = [...by.entries()].map(([policy, m]) => ({
    policy,
    points: [...m.values()].map((e) => ({ x: avg(e.xs), y: avg(e.ys) })).sort((a, b) => a.x - b.x),
  }));
  // at 1x every policy is the full cache: each line starts there
  const full = out.find((s) => s.policy === "full")?.points[0];
  if (full) for (const s of out) if (s.policy !== "full") s.points.unshift({ ...full });
  return out;
}

function ticks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => (hi - lo) / s <= n) ?? step * 10;
  const out: number[] = [];
  for (let v = Math.ceil(lo / nice) * nice; v <= hi + 1e-12; v += nice) out.push(Number(v.toPrecision(6)));
  return out;
}

function bounds(series: readonly Series[], zeroY: boolean): { x0: number; x1: number; y0: number; y1: number } {
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  const ys = series.flatMap((s) => s.points.map((p) => p.y));
  let y0 = Math.min(...ys);
  let y1 = Math.max(...ys);
  if (zeroY) y0 = Math.min(0, y0);
  if (y1 === y0) y1 = y0 + 1;
  const pad = (y1 - y0) * 0.05;
  return { x0: Math.min(1, ...xs), x1: Math.max(...xs) * 1.05, y0: zeroY ? y0 : y0 - pad, y1: y1 + pad };
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;");

export function svgPlot(series: readonly Series[], o: { title: string; xLabel: string; yLabel: string; zeroY?: boolean }): string {
  const W = 640;
  const H = 420;
  const m = { l: 70, r: 120, t: 40, b: 50 };
  const b = bounds(series, o.zeroY ?? false);
  const X = (x: number) => m.l + ((x - b.x0) / (b.x1 - b.x0)) * (W - m.l - m.r);
  const Y = (y: number) => H - m.b - ((y - b.y0) / (b.y1 - b.y0)) * (H - m.t - m.b);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(o.title)}</text>`);
  for (const t of ticks(b.x0, b.x1)) {
    out.push(
      `<line x1="${X(t)}" y1="${m.t}" x2="${X(t)}" y2="${H - m.b}" stroke="#eee"/><text x="${X(t)}" y="${H - m.b + 16}" text-anchor="middle">${t}x</text>`,
    );
  }
  for (const t of ticks(b.y0, b.y1)) {
    out.push(`<line x1="${m.l}" y1="${Y(t)}" x2="${W - m.r}" y2="${Y(t)}" stroke="#eee"/><text x="${m.l - 6}" y="${Y(t) + 4}" text-anchor="end">${t}</text>`);
  }
  out.push(`<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#888"/>`);
  out.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  out.push(`<text x="16" y="${(m.t + H - m.b) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(m.t + H - m.b) / 2})">${esc(o.yLabel)}</text>`);
  series.forEach((s, i) => {
    const c = COLORS[s.policy] ?? "#9467bd";
    const pts = s.points.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(" ");
    if (s.points.length > 1) out.push(`<polyline points="${pts}" fill="none" stroke="${c}" stroke-width="2"/>`);
    for (const p of s.points)
      out.push(
        `<circle cx="${X(p.x).toFixed(1)}" cy="${Y(p.y).toFixed(1)}" r="3.5" fill="${c}"><title>${esc(s.policy)} ${p.x.toFixed(2)}x: ${p.y.toPrecision(4)}</title></circle>`,
      );
    const ly = m.t + 10 + i * 18;
    out.push(
      `<line x1="${W - m.r + 12}" y1="${ly}" x2="${W - m.r + 32}" y2="${ly}" stroke="${c}" stroke-width="2"/><text x="${W - m.r + 38}" y="${ly + 4}">${esc(s.policy)}</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** A chart of `width` × `height` characters: each policy's points as its letter (F K W R O), x = compression. */
export function terminalChart(series: readonly Series[], o: { yLabel: string; width?: number; height?: number; zeroY?: boolean }): string {
  const w = o.width ?? 56;
  const h = o.height ?? 12;
  if (series.every((s) => s.points.length === 0)) return "";
  const b = bounds(series, o.zeroY ?? false);
  const grid = Array.from({ length: h }, () => Array.from({ length: w }, () => " "));
  for (const s of series) {
    const ch = LETTERS[s.policy] ?? "*";
    for (const p of s.points) {
      const cx = Math.round(((p.x - b.x0) / (b.x1 - b.x0)) * (w - 1));
      const cy = h - 1 - Math.round(((p.y - b.y0) / (b.y1 - b.y0)) * (h - 1));
      const cur = grid[cy][cx];
      grid[cy][cx] = cur === " " || cur === ch ? ch : "+";
    }
  }
  const yl = (v: number) => v.toPrecision(3).padStart(8);
  const lines = grid.map((row, i) => `${i === 0 ? yl(b.y1) : i === h - 1 ? yl(b.y0) : " ".repeat(8)} |${row.join("")}`);
  lines.push(`${" ".repeat(8)} +${"-".repeat(w)}`);
  lines.push(`${" ".repeat(9)}${`${b.x0.toFixed(1)}x`.padEnd(w - 6)}${b.x1.toFixed(1)}x`);
  const legend = series.map((s) => `${LETTERS[s.policy] ?? "*"} ${s.policy}`).join("  ");
  return [`${o.yLabel} against compression (${legend}; + where they overlap)`, ...lines].join("\n");
}
