// The evaluation baselines inside the fork: seeded random eviction (a controlled kept fraction per head) and
// externally given scores, on the real test-bed model.
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corpora, models } from "../../test/helpers/cli.js";
import type { KvOptions } from "./kv.js";
import { Model } from "./model.js";

const N = 700;
const WINDOW = 64;

describe("random and given-score eviction on the test-bed", () => {
  let model: Model;
  let prompt: number[];
  beforeAll(async () => {
    model = await Model.load(models.testbed);
    const text = (await readFile(`${corpora}/gutenberg-sherlock-holmes.txt`, "utf8")).slice(60_000, 60_000 + N * 8);
    prompt = model.tokenize(text).slice(0, N);
    expect(prompt.length).toBe(N);
  });
  afterAll(() => model.dispose());

  async function run(kv: KvOptions) {
    const s = await model.createSession({ contextSize: 1024, batchSize: 128, kv });
    try {
      await s.setPrompt(prompt);
      return { logits: s.logits(), stats: s.kvStats() };
    } finally {
      s.dispose();
    }
  }

  it("random keeps the chosen fraction of every head, at places the seed picks", async () => {
    const a = await run({ policy: "random", keep: 0.25, seed: 1, window: WINDOW });
    const b = await run({ policy: "random", keep: 0.25, seed: 1, window: WINDOW });
    const c = await run({ policy: "random", keep: 0.25, seed: 2, window: WINDOW });
    expect(a.stats.policy).toBe("random");
    // positions [0, N - WINDOW) have left the window: 16 of every full group of 64 stay, the partial group ~ a quarter
    const decided = N - WINDOW;
    const full = Math.floor(decided / 64);
    for (const layer of a.stats.layers!) {
      for (const e of layer.entries) {
        expect(e - WINDOW).toBeGreaterThanOrEqual(full * 16);
        expect(e - WINDOW).toBeLessThanOrEqual(full * 16 + (decided % 64));
      }
    }
    expect(Array.from(a.logits)).toEqual(Array.from(b.logits));
    expect(Array.from(a.logits)).not.toEqual(Array.from(c.logits));
    const half = await run({ policy: "random", keep: 0.5, seed: 1, window: WINDOW });
    const e25 = a.stats.layers![0].entries[0];
    const e50 = half.stats.layers![0].entries[0];
    expect(e50 - WINDOW).toBeGreaterThanOrEqual(full * 32);
    expect(e50).toBeGreaterThan(e25);
  });

  it("given scores decide with τ like the surrogate's, and positions past them are kept", async () => {
    const L = model.info.layers;
    const H = model.info.kvHeads;
    const given = 400; // scores for positions [0, 400): even positions 0, odd 1
    const scores = Array.from({ length: L }, (_, l) => {
      const s = new Float32Array(given * H);
      for (let p = 0; p < given; p++) for (let h = 0; h < H; h++) s[p * H + h] = (p + (l === 0 && h === 1 ? 1 : 0)) % 2;
      return s;
    });
    const r = await run({ policy: "scores", scores, tau: 0.5, window: WINDOW });
    expect(r.stats.policy).toBe("scores");
    // the odd half of [0, 400) is kept, and [400, N) stays (no score given) although most of it left the window
    const expected = given / 2 + (N - given);
    for (const layer of r.stats.layers!) for (const e of layer.entries) expect(e).toBe(expected);
    const none = await run({ policy: "scores", scores, tau: 2, window: WINDOW });
    expect(none.stats.layers![0].entries[0]).toBe(N - given);
    await expect(run({ policy: "scores", scores: scores.slice(1), tau: 0.5 })).rejects.toThrow(/layers/);
  });
});
