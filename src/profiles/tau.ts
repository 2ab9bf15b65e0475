// τ ↔ cache size, read off a profile's measured τ table by piecewise-linear interpolation. Linear pieces keep the
// monotonicity of the measurements (a higher τ never keeps more) and make the two directions exact inverses.
import { UserError } from "../base/errors.js";
import type { TauPoint } from "./manifest.js";

function sorted(table: readonly TauPoint[]): TauPoint[] {
  if (table.length === 0) throw new UserError("this profile has no τ table (it was imported, not calibrated); set τ directly or calibrate one with kvzap calibrate");
  return [...table].sort((a, b) => a.tau - b.tau);
}

function range(t: TauPoint[]): string {
  const lo = t[0];
  const hi = t[t.length - 1];
  return `τ ${lo.tau} (keeps ${pct(lo.keep)}, ${lo.compression.toFixed(2)}x) … τ ${hi.tau} (keeps ${pct(hi.keep)}, ${hi.compression.toFixed(2)}x)`;
}

function pct(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function lerp(x0: number, x1: number, y0: number, y1: number, x: number): number {
  return x1 === x0 ? y0 : y0 + ((y1 - y0) * (x - x0)) / (x1 - x0);
}

function atTau(table: readonly TauPoint[], tau: number, column: "keep" | "compression"): number {
  const t = sorted(table);
  if (!Number.isFinite(tau) || tau < t[0].tau || tau > t[t.length - 1].tau) {
    throw new UserError(`τ = ${tau} is outside this profile's τ table (${range(t)})`);
  }
  for (let i = 0; i < t.length - 1; i++) {
    if (tau <= t[i + 1].tau) return lerp(t[i].tau, t[i + 1].tau, t[i][column], t[i + 1][column], tau);
  }
  return t[t.length - 1][column];
}

/** The fraction of KV pairs kept at threshold τ. */
export function keepForTau(table: readonly TauPoint[], tau: number): number {
  return atTau(table, tau, "keep");
}

/** The compression ratio (full cache / kept cache) at threshold τ. */
export function compressionForTau(table: readonly TauPoint[], tau: number): number {
  return atTau(table, tau, "compression");
}

/**
 * The τ that reaches a target compression ratio or kept fraction (exactly one of them). Where the table is flat at
 * the target, the lowest such τ (the one that keeps the most) is returned.
 */
export function tauForTarget(table: readonly TauPoint[], target: { compression?: number; keep?: number }): number {
  const { compression, keep } = target;
  if ((compression === undefined) === (keep === undefined)) throw new UserError("give one target: a compression ratio or a kept fraction");
  const t = sorted(table);
  if (keep !== undefined) {
    if (!(keep > 0 && keep <= 1)) throw new UserError(`the kept fraction must be in (0, 1], got ${keep}`);
    // keep falls as τ rises.
    if (keep > t[0].keep || keep < t[t.length - 1].keep) {
      throw new UserError(`keeping ${pct(keep)} of the KV cache is outside this profile's τ table (${range(t)})`);
    }
    for (let i = 0; i < t.length - 1; i++) {
      if (keep >= t[i + 1].keep) return lerp(t[i].keep, t[i + 1].keep, t[i].tau, t[i + 1].tau, keep);
    }
    return t[t.length - 1].tau;
  }
  const c = compression!;
  if (!(c >= 1 && Number.isFinite(c))) throw new UserError(`the compression ratio must be at least 1, got ${c}`);
  if (c < t[0].compression || c > t[t.length - 1].compression) {
    throw new UserError(`a compression of ${c}x is outside this profile's τ table (${range(t)})`);
  }
  for (let i = 0; i < t.length - 1; i++) {
    if (c <= t[i + 1].compression) return lerp(t[i].compression, t[i + 1].compression, t[i].tau, t[i + 1].tau, c);
  }
  return t[t.length - 1].tau;
}
