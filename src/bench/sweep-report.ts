// What `kvzap bench sweep` writes: every configuration's rows, the machine, the settings and the commands that made
// them, and the longest context that fits a memory size, derived from the measured peaks.
import type { BenchModelInfo } from "./report.js";
import { caseName, type SweepRow, type SweepSettings } from "./sweep.js";
import type { DeviceInfo } from "./system.js";

export interface ContextFit {
  engine: string;
  kvType: string;
  /** Peak device bytes ≈ fixedBytes + bytesPerToken · depth, least squares over the measured depths. */
  fixedBytes: number;
  bytesPerToken: number;
  /** Positions that fit in `budgetBytes` by that line (may exceed the model's trained context: it is a memory figure). */
  tokens: number;
  budgetBytes: number;
}

export interface SweepReport {
  kind: "kvzap-bench-sweep";
  created: string;
  model: BenchModelInfo;
  device: DeviceInfo;
  /** The stock engine's addon and its llama.cpp version (unpatched, the same tag as ours). */
  stock: { addon: string; llamaVersion: string } | null;
  settings: SweepSettings & { engines: string[]; kvTypes: string[]; text: string; profile: string; sampling: string };
  /** The command line of the sweep and of each configuration's process. */
  commands: string[];
  rows: SweepRow[];
  fit24GiB: ContextFit[];
}

export const GIB24 = 24 * 1024 ** 3;

/** The least-squares line of peak device memory over depth per (engine, kvType), and where it crosses `budget`. */
export function contextFits(rows: readonly SweepRow[], budget = GIB24): ContextFit[] {
  const groups = new Map<string, SweepRow[]>();
  for (const r of rows) {
    if (r.peakDeviceBytes === null) continue;
    const k = `${caseName(r)}|${r.kvType}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const out: ContextFit[] = [];
  for (const [k, g] of groups) {
    if (g.length < 2) continue;
    const [engine, kvType] = k.split("|");
    const n = g.length;
    const mx = g.reduce((a, r) => a + r.depth, 0) / n;
    const my = g.reduce((a, r) => a + r.peakDeviceBytes!, 0) / n;
    const sxx = g.reduce((a, r) => a + (r.depth - mx) ** 2, 0);
    const sxy = g.reduce((a, r) => a + (r.depth - mx) * (r.peakDeviceBytes! - my), 0);
    if (sxx <= 0 || sxy <= 0) continue;
    const b = sxy / sxx;
    const a = my - b * mx;
    out.push({
      engine,
      kvType,
      fixedBytes: Math.round(a),
      bytesPerToken: Math.round(b * 10) / 10,
      tokens: Math.max(0, Math.floor((budget - a) / b)),
      budgetBytes: budget,
    });
  }
  return out;
}
