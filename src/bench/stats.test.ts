import { describe, expect, it } from "vitest";
import { median, pairRatios, rotation, round, summarize } from "./stats.js";

describe("benchmark statistics", () => {
  it("median of odd and even counts, and of nothing", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it("a summary keeps every value in order with its median and range", () => {
    expect(summarize([5, 1, 3])).toEqual({ median: 3, min: 1, max: 5, all: [5, 1, 3] });
  });

  it("ratios are taken repetition by repetition, skipping a zero baseline", () => {
    expect(pairRatios([2, 3, 4], [1, 0, 2])).toEqual([2, 2]);
    expect(pairRatios([1, 2], [1])).toEqual([1]);
  });

  it("the order rotates by one each repetition", () => {
    expect([0, 1, 2, 3].map((r) => rotation(["a", "b"], r).join(""))).toEqual(["ab", "ba", "ab", "ba"]);
    expect(rotation(["a", "b", "c"], 2)).toEqual(["c", "a", "b"]);
    expect(rotation([], 3)).toEqual([]);
  });

  it("rounds to significant digits", () => {
    expect(round(1234.5678)).toBe(1235);
    expect(round(0.0123456)).toBe(0.01235);
    expect(round(0)).toBe(0);
  });
});
