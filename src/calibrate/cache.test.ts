// The oracle cache: pairs round-trip, a prompt counts only once all its layers are written, other settings start over.
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { OracleCache, type CacheSettings, type PromptPairs } from "./cache.js";
import type { CalibrationPrompt } from "./data.js";

const settings: CacheSettings = {
  model: "sha256:abc",
  layers: 2,
  embeddingSize: 3,
  kvHeads: 2,
  samplesPerPrompt: 500,
  repeatChunk: 2048,
  seed: 0,
  layout: "1|2,3",
};

function pairs(n: number, base: number): PromptPairs {
  return {
    n,
    x: [0, 1].map((l) => Float32Array.from({ length: n * 3 }, (_, i) => base + l * 100 + i)),
    y: [0, 1].map((l) => Float32Array.from({ length: n * 2 }, (_, i) => -(base + l * 100 + i))),
  };
}

function prompt(id: string): CalibrationPrompt {
  return { id, file: "a.txt", start: 0, end: 1, text: "a", tokens: [5, 6, 7] };
}

describe("the oracle cache", () => {
  it("returns a layer's pairs of several prompts in order, across reopenings", async () => {
    const dir = path.join(mkdtempSync(path.join(os.tmpdir(), "kvzap-cache-")), "p.cache");
    const c = await OracleCache.open(dir, settings);
    expect(c.discarded).toBeNull();
    await c.put(prompt("aaaa"), pairs(2, 0));
    await c.put(prompt("bbbb"), pairs(3, 1000));
    writeFileSync(path.join(dir, ".cccc-l0.f32.123.0123abcd.tmp"), "left by a killed run");
    const again = await OracleCache.open(dir, settings);
    expect(again.has("aaaa") && again.has("bbbb")).toBe(true);
    expect(again.entry("bbbb")).toMatchObject({ file: "a.txt", tokens: 3, samples: 3 });
    const l1 = await again.layer(["bbbb", "aaaa"], 1);
    expect(l1.n).toBe(5);
    expect(Array.from(l1.x.subarray(0, 3))).toEqual([1100, 1101, 1102]);
    expect(Array.from(l1.x.subarray(9, 12))).toEqual([100, 101, 102]);
    expect(Array.from(l1.y.subarray(6, 8))).toEqual([-100, -101]);
    expect(readdirSync(dir).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("starts over, removing its files, when the settings differ", async () => {
    const dir = path.join(mkdtempSync(path.join(os.tmpdir(), "kvzap-cache-")), "p.cache");
    const c = await OracleCache.open(dir, settings);
    await c.put(prompt("aaaa"), pairs(2, 0));
    writeFileSync(path.join(dir, "mine.txt"), "not the cache's");
    const other = await OracleCache.open(dir, { ...settings, seed: 1 });
    expect(other.discarded).toMatch(/other settings/);
    expect(other.has("aaaa")).toBe(false);
    expect(existsSync(path.join(dir, "aaaa-l0.f32"))).toBe(false);
    expect(existsSync(path.join(dir, "mine.txt"))).toBe(true);
  });

  it("a damaged pair file is a clear error", async () => {
    const dir = path.join(mkdtempSync(path.join(os.tmpdir(), "kvzap-cache-")), "p.cache");
    const c = await OracleCache.open(dir, settings);
    await c.put(prompt("aaaa"), pairs(2, 0));
    writeFileSync(path.join(dir, "aaaa-l0.f32"), Buffer.alloc(7));
    await expect(c.layer(["aaaa"], 0)).rejects.toThrow(/damaged/);
  });
});
