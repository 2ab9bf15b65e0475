// The τ table counts what the memory keeps: the window (n − 1 − p ≤ w), older pairs scoring ≥ τ, in whole blocks.
import { describe, expect, it } from "vitest";
import { parseManifest } from "../profiles/manifest.js";
import { tauForTarget } from "../profiles/tau.js";
import { buildTauTable, keptAt, tauGrid, type ScoredPrompt } from "./tau.js";

/** One layer, `heads` heads; score of position p for head h = f(p, h). */
function prompt(n: number, heads: number, f: (p: number, h: number) => number, layers = 1): ScoredPrompt {
  return {
    n,
    scores: Array.from({ length: layers }, () => Float32Array.from({ length: n * heads }, (_, i) => f(Math.floor(i / heads), i % heads))),
  };
}

describe("the τ table", () => {
  it("counts the window, the pairs at or above τ, and whole blocks", () => {
    // n = 100, window 9: positions 90..99 (10 of them) stay; 0..89 are judged. Head 0 scores p, head 1 scores −p.
    const p = prompt(100, 2, (pos, h) => (h === 0 ? pos : -pos));
    const shape = { layers: 1, kvHeads: 2, window: 9, blockSize: 16 };
    const { kept, full } = keptAt([p], shape, [-1e9, 50, 0, 1e9]);
    expect(full).toBe(200);
    // τ = −1e9: 100 each → 7 blocks = 112 each
    expect(kept[0]).toBe(224);
    // τ = 50: head 0 keeps 50..89 (40) + 10 = 50 → 64; head 1 keeps none of the old (−p ≥ 50 never) → 10 → 16
    expect(kept[1]).toBe(64 + 16);
    // τ = 0: head 0 keeps 0..89 → 100 → 112; head 1 keeps p = 0 → 11 → 16
    expect(kept[2]).toBe(112 + 16);
    // τ = 1e9: only the window: 10 → 16 each
    expect(kept[3]).toBe(32);
  });

  it("keeps everything of a prompt no longer than the window", () => {
    const p = prompt(20, 1, () => -100);
    const { kept, full } = keptAt([p], { layers: 1, kvHeads: 1, window: 128, blockSize: 16 }, [0]);
    expect(full).toBe(20);
    expect(kept[0]).toBe(32);
  });

  it("is monotone, spans keep-all to window-only, and parses as a manifest's table", () => {
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
    const prompts = [prompt(900, 2, () => -8 + 6 * rand(), 3), prompt(700, 2, () => -9 + 5 * rand(), 3)];
    const shape = { layers: 3, kvHeads: 2, window: 128, blockSize: 16 };
    const taus = tauGrid(prompts, shape);
    expect(taus.length).toBeGreaterThan(30);
    const table = buildTauTable(prompts, shape, taus);
    expect(table[0].keep).toBe(1);
    for (let i = 1; i < table.length; i++) {
      expect(table[i].tau).toBeGreaterThan(table[i - 1].tau);
      expect(table[i].keep).toBeLessThanOrEqual(table[i - 1].keep);
    }
    // window only: 129 of 900 and 129 of 700 → 9 blocks (144) each per head
    expect(table[table.length - 1].keep).toBeCloseTo((144 + 144) / 1600, 6);
    // a manifest accepts it, and a 3x target lands between its neighbours
    const manifest = parseManifest(
      {
        format: "kvzap-profile",
        version: 1,
        name: "t",
        model: { architecture: "llama", layers: 3, embeddingSize: 8, kvHeads: 2, headDim: 4, fingerprint: `sha256:${"0".repeat(64)}`, file: null },
        surrogate: { kind: "linear", inputDim: 8, outputDim: 2, hiddenDim: null, layers: 3 },
        tau: 0,
        window: 128,
        tauTable: table,
        provenance: { tool: "test", created: "2026-01-01T00:00:00Z" },
        weights: "weights.safetensors",
      },
      "test",
    );
    const tau = tauForTarget(manifest.tauTable, { compression: 3 });
    const i = table.findIndex((r) => r.compression >= 3);
    expect(tau).toBeGreaterThan(table[i - 1].tau);
    expect(tau).toBeLessThanOrEqual(table[i].tau);
  });
});
