import { describe, expect, it } from "vitest";
import { pairCompression, randomKeepFor, tauForKeptPairs, windowFor } from "./policies.js";
import { confidenceInterval, scoreOutput } from "./score.js";

describe("scoring as RULER scores", () => {
  it("all: the share of the answers found, case-insensitively; part: any of them", () => {
    expect(scoreOutput(" 1234567. The other is 7654321", ["1234567", "7654321"], "all")).toBe(1);
    expect(scoreOutput(" 1234567 and 1111111", ["1234567", "7654321"], "all")).toBe(0.5);
    expect(scoreOutput(" nothing", ["1234567"], "all")).toBe(0);
    expect(scoreOutput("AMBER, maple", ["amber", "Maple", "onyx", "reef"], "all")).toBe(0.5);
    expect(scoreOutput("in 1843", ["1843", "the year 1843"], "part")).toBe(1);
    expect(scoreOutput("in 1844", ["1843", "the year 1843"], "part")).toBe(0);
  });

  it("gives Wilson's 95% interval", () => {
    const zero = confidenceInterval(Array(10).fill(0));
    expect(zero.mean).toBe(0);
    expect(zero.low).toBe(0);
    expect(zero.high).toBeCloseTo(0.2775, 3);
    const half = confidenceInterval([1, 0, 1, 0, 1, 0, 1, 0, 1, 0]);
    expect(half.low).toBeCloseTo(0.2366, 3);
    expect(half.high).toBeCloseTo(0.7634, 3);
  });
});

describe("matching a compression", () => {
  it("sets the window, the kept fraction and τ to hold the same pairs", () => {
    expect(windowFor(1000)).toBe(996);
    // 4096 tokens at 4x: 1024 pairs; window 128 + 0.25 of the other 3968 ≈ 1120, so the kept share is lower
    expect(randomKeepFor(1024, 4096, 128)).toBeCloseTo((1024 - 128) / 3968, 10);
    expect(randomKeepFor(100, 4096, 128)).toBe(0);
    const scores = [Float32Array.from([5, 1, 4, 2, 3, 0]), Float32Array.from([9, 9, 9, 9, 9, 9])];
    // layer 0 only, 3 positions x 2 heads decided out of layer 0's 6 and layer 1's 6: keep the 8 highest
    const tau = tauForKeptPairs(scores, 3, 2, 8);
    expect([...scores[0], ...scores[1]].filter((s) => s >= tau)).toHaveLength(8);
    expect(tauForKeptPairs(scores, 3, 2, 0)).toBe(Infinity);
  });

  it("counts compression in pairs held per head", () => {
    const c = pairCompression({
      policy: "kvzap",
      bytesInUse: 100,
      bytesFullEquivalent: 400,
      bytesFullAllocation: 800,
      poolBytes: 128,
      tokens: 1000,
      layers: [{ bytesInUse: 0, bytesFullEquivalent: 0, entries: [200, 300], blocks: [] }],
    });
    expect(c.pairsPerHead).toBe(250);
    expect(c.compression).toBe(4);
    expect(c.bytesCompression).toBe(4);
  });
});
