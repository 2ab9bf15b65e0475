import { describe, expect, it } from "vitest";
import type { SweepRow } from "./sweep.js";
import { contextFits, GIB24 } from "./sweep-report.js";

const row = (engine: SweepRow["engine"], keep: number, depth: number, peak: number | null): SweepRow => ({
  engine,
  keep,
  depth,
  kvType: "f16",
  prefillTps: 1,
  decodeTps: 1,
  kvBytes: 0,
  peakDeviceBytes: peak,
  sessionDeviceBytes: null,
  promptTokens: depth,
  prefill: { median: 1, min: 1, max: 1, all: [1] },
  decode: { median: 1, min: 1, max: 1, all: [1] },
  kvBytesInUse: 0,
  kvBytesFullEquivalent: 0,
  kvBytesFullAllocation: 0,
  evicted: 0,
  decodedTokens: 0,
  decodeHostMsPerToken: null,
});

describe("contextFits", () => {
  it("fits peak = fixed + perToken · depth per configuration and solves it for 24 GiB", () => {
    const fixed = 9e9;
    const rows = [4096, 16384, 65536].flatMap((d) => [row("stock", 1, d, fixed + 131072 * d), row("kvzap", 0.25, d, fixed + 2e8 + 34000 * d)]);
    const fits = contextFits(rows);
    const stock = fits.find((f) => f.engine === "stock")!;
    const kz = fits.find((f) => f.engine === "kvzap@0.25")!;
    expect(stock.bytesPerToken).toBeCloseTo(131072, 0);
    expect(stock.fixedBytes).toBeCloseTo(fixed, -3);
    expect(stock.tokens).toBe(Math.floor((GIB24 - fixed) / 131072));
    expect(kz.tokens).toBe(Math.floor((GIB24 - fixed - 2e8) / 34000));
  });

  it("leaves out configurations without two measured depths or without device figures", () => {
    expect(contextFits([row("stock", 1, 4096, 1e9)])).toEqual([]);
    expect(contextFits([row("stock", 1, 4096, null), row("stock", 1, 8192, null)])).toEqual([]);
  });
});
