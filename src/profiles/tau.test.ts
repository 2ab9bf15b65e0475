import { describe, expect, it } from "vitest";
import { UserError } from "../base/errors.js";
import type { TauPoint } from "./manifest.js";
import { compressionForTau, keepForTau, tauForTarget } from "./tau.js";

const table: TauPoint[] = [
  { tau: -2, keep: 0.1, compression: 10 },
  { tau: -8, keep: 0.9, compression: 1 / 0.9 },
  { tau: -6, keep: 0.52, compression: 1.92 },
  { tau: -4, keep: 0.3, compression: 1 / 0.3 },
];

describe("τ ↔ cache size", () => {
  it("reads the table at its points and interpolates linearly between them (any row order)", () => {
    expect(keepForTau(table, -6)).toBe(0.52);
    expect(keepForTau(table, -8)).toBe(0.9);
    expect(keepForTau(table, -2)).toBeCloseTo(0.1, 12);
    expect(keepForTau(table, -5)).toBeCloseTo(0.41, 12);
    expect(keepForTau(table, -7)).toBeCloseTo(0.71, 12);
    expect(compressionForTau(table, -6)).toBe(1.92);
    expect(compressionForTau(table, -3)).toBeCloseTo((1 / 0.3 + 10) / 2, 12);
  });

  it("is monotone: a higher τ never keeps more", () => {
    let last = Infinity;
    for (let tau = -8; tau <= -2; tau += 0.125) {
      const k = keepForTau(table, tau);
      expect(k).toBeLessThanOrEqual(last);
      last = k;
    }
  });

  it("inverts exactly: tauForTarget(keepForTau(τ)) = τ, for keep and compression targets", () => {
    for (const tau of [-8, -7.5, -6, -5.25, -4, -3.1, -2]) {
      expect(tauForTarget(table, { keep: keepForTau(table, tau) })).toBeCloseTo(tau, 10);
      expect(tauForTarget(table, { compression: compressionForTau(table, tau) })).toBeCloseTo(tau, 10);
    }
    expect(tauForTarget(table, { keep: 0.52 })).toBe(-6);
    expect(tauForTarget(table, { compression: 1.92 })).toBe(-6);
  });

  it("on a flat stretch, returns the lowest τ (the one that keeps the most)", () => {
    const flat: TauPoint[] = [
      { tau: -8, keep: 0.9, compression: 1.1 },
      { tau: -6, keep: 0.5, compression: 2 },
      { tau: -4, keep: 0.5, compression: 2 },
      { tau: -2, keep: 0.2, compression: 5 },
    ];
    expect(tauForTarget(flat, { keep: 0.5 })).toBe(-6);
    expect(tauForTarget(flat, { compression: 2 })).toBe(-6);
    expect(tauForTarget(flat, { keep: 0.35 })).toBeCloseTo(-3, 12);
  });

  it("refuses targets outside the table, bad targets, and an empty table", () => {
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(UserError);
        return (e as Error).message;
      }
      throw new Error("expected an error");
    };
    expect(err(() => keepForTau(table, -9))).toMatch(/^τ = -9 is outside this profile's τ table \(τ -8 \(keeps 90\.0%, 1\.11x\) … τ -2 \(keeps 10\.0%, 10\.00x\)\)$/);
    expect(err(() => keepForTau(table, -1))).toMatch(/outside/);
    expect(err(() => tauForTarget(table, { compression: 12 }))).toMatch(/a compression of 12x is outside/);
    expect(err(() => tauForTarget(table, { compression: 1.05 }))).toMatch(/outside/);
    expect(err(() => tauForTarget(table, { keep: 0.95 }))).toMatch(/keeping 95\.0% of the KV cache is outside/);
    expect(err(() => tauForTarget(table, { keep: 0.05 }))).toMatch(/outside/);
    expect(err(() => tauForTarget(table, {}))).toMatch(/give one target/);
    expect(err(() => tauForTarget(table, { keep: 0.5, compression: 2 }))).toMatch(/give one target/);
    expect(err(() => tauForTarget(table, { keep: 1.5 }))).toMatch(/must be in \(0, 1\]/);
    expect(err(() => tauForTarget(table, { compression: 0.5 }))).toMatch(/at least 1/);
    expect(err(() => keepForTau([], -4))).toMatch(/no τ table/);
  });
});
