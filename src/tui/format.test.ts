import { describe, expect, it } from "vitest";
import { formatMs, formatRate, tailRows, wrappedRows } from "./format.js";

describe("format", () => {
  it("rates and durations", () => {
    expect(formatRate(367.4)).toBe("367 tok/s");
    expect(formatRate(12.345)).toBe("12.3 tok/s");
    expect(formatRate(0)).toBe("– tok/s");
    expect(formatMs(850)).toBe("850 ms");
    expect(formatMs(15_234)).toBe("15.2 s");
    expect(formatMs(125_000)).toBe("2 min 5 s");
  });

  it("keeps the tail of a long answer that fits the rows left", () => {
    expect(wrappedRows("abcdef\n\nxy", 4)).toBe(4);
    expect(tailRows("short", 10, 3)).toEqual({ text: "short", cut: false });
    expect(tailRows("l1\nl2\nl3\nl4", 10, 2)).toEqual({ text: "l3\nl4", cut: true });
    expect(tailRows("abcdefghij", 4, 2)).toEqual({ text: "cdefghij", cut: true });
  });
});
