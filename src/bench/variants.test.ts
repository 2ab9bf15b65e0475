import { describe, expect, it } from "vitest";
import { UsageError } from "../base/errors.js";
import { KEEP_ALL_TAU, needsProfile, parseVariants, variantSession } from "./variants.js";

describe("benchmark variants", () => {
  it("parses every kind", () => {
    expect(parseVariants("stock,stock-fa,stock-nofa,kvzap,kvzap@-4,kvzap@1e9,window,window@256")).toEqual([
      { name: "stock", kind: "stock" },
      { name: "stock-fa", kind: "stock", flashAttention: true },
      { name: "stock-nofa", kind: "stock", flashAttention: false },
      { name: "kvzap", kind: "kvzap", tau: KEEP_ALL_TAU },
      { name: "kvzap@-4", kind: "kvzap", tau: -4 },
      { name: "kvzap@1e9", kind: "kvzap", tau: 1e9 },
      { name: "window", kind: "window" },
      { name: "window@256", kind: "window", window: 256 },
    ]);
  });

  it("rejects unknown names, bad τ, duplicates and empty lists as usage errors", () => {
    for (const bad of ["fast", "kvzap@", "kvzap@x", "window@-1", "stock,stock", " , "]) {
      expect(() => parseVariants(bad), bad).toThrow(UsageError);
    }
  });

  it("kvzap needs a profile; the stock path keeps llama.cpp's flash-attention default unless forced", () => {
    expect(needsProfile(parseVariants("stock,window"))).toBe(false);
    expect(needsProfile(parseVariants("stock,kvzap@-3"))).toBe(true);
    expect(variantSession(parseVariants("stock")[0], undefined)).toEqual({ kv: { policy: "full" }, flashAttention: undefined });
    expect(variantSession(parseVariants("stock-nofa")[0], undefined).flashAttention).toBe(false);
    expect(() => variantSession(parseVariants("kvzap")[0], undefined)).toThrow(/profile/);
  });
});
