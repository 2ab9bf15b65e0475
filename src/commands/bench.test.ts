// The benchmark functions on the real stories260K model: structure and sanity of what they measure, never speed.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { models } from "../../test/helpers/cli.js";
import { randomProfileFor, unprofiledCopy } from "../../test/helpers/kvzap.js";
import { parseVariants } from "../bench/variants.js";
import { Model } from "../engine/model.js";
import { benchMemory, benchSpeed } from "./bench.js";

// stories260K: 5 layers × 4 KV heads × head dim 8, K and V in f16.
const BYTES_PER_TOKEN = 5 * 4 * 8 * 2 * 2;

describe("bench functions on stories260K", () => {
  let model: Model;
  // An empty cache folder: no user profile of the developer's can be found instead of the random one.
  let cacheDir: string;
  beforeAll(async () => {
    // a copy that no shipped profile matches, so that the random-weights path is the one taken
    model = await Model.load(await unprofiledCopy("stories"));
    cacheDir = await mkdtemp(path.join(os.tmpdir(), "kvzap-bench-cache-"));
  });
  afterAll(async () => {
    model.dispose();
    await rm(cacheDir, { recursive: true, force: true });
  });

  it("speed: every run decodes the asked tokens; kvzap at τ = -1e9 holds every pair; ratios pair the repetitions", async () => {
    const events: string[] = [];
    const r = await benchSpeed({
      model,
      variants: parseVariants("stock,kvzap,window@32"),
      contextSize: 512,
      promptTokens: 300,
      decodeTokens: 40,
      reps: 2,
      threads: 2,
      batchSize: 64,
      warmup: false,
      cacheDir,
      onEvent: (e) => events.push(e.type === "run" ? `${e.run.rep}:${e.variant}` : `warmup:${e.variant}`),
    });
    expect(events).toEqual(["0:stock", "0:kvzap", "0:window@32", "1:kvzap", "1:window@32", "1:stock"]);
    expect(r.settings.profile?.source).toBe("random");
    expect(r.settings.profile?.path).toBeNull();
    for (const res of r.results) {
      expect(res.runs).toHaveLength(2);
      for (const run of res.runs) {
        expect(run.promptTokens).toBe(300);
        expect(run.decodedTokens).toBe(40);
        expect(run.prefillTokPerSec).toBeGreaterThan(0);
        expect(run.decodeTokPerSec).toBeGreaterThan(0);
      }
    }
    const kvzap = r.results.find((x) => x.variant === "kvzap")!;
    expect(kvzap.runs.every((x) => x.evicted === 0)).toBe(true);
    expect(kvzap.kvBytesFullEquivalent).toBe(340 * BYTES_PER_TOKEN);
    expect(kvzap.kvBytesInUse).toBeGreaterThanOrEqual(kvzap.kvBytesFullEquivalent);
    const window = r.results.find((x) => x.variant === "window@32")!;
    expect(window.kvBytesInUse).toBeLessThan(window.kvBytesFullEquivalent);
    expect(r.baseline).toBe("stock");
    expect(r.ratios).toEqual(r.ratiosVsBaseline.kvzap);
    const stock = r.results[0];
    expect(r.ratios!.prefill.all).toHaveLength(2);
    // the ratio of the second repetition's pair (both sides are rounded in the report: compare within 0.5%)
    const pair = kvzap.runs[1].decodeTokPerSec / stock.runs[1].decodeTokPerSec;
    expect(Math.abs(r.ratios!.decode.all[1] / pair - 1)).toBeLessThan(5e-3);
  });

  it("memory: τ = -1e9 keeps everything and agrees with the full cache; compression rises with τ", async () => {
    const profile = await randomProfileFor("stories");
    const real = await Model.load(models.stories);
    const r = await benchMemory({
      model: real,
      taus: [-1e9, -6, -4, 1e9],
      contextSize: 512,
      promptTokens: 300,
      compareTokens: 8,
      threads: 2,
      batchSize: 64,
      profilePath: profile.dir,
    }).finally(() => real.dispose());
    expect(r.settings.profile.source).toBe("given");
    expect(r.full.tokens).toHaveLength(8);
    const [all, ...rest] = r.results;
    expect(all.evicted).toBe(0);
    expect(all.agreement).toBe(1);
    expect(all.firstMismatch).toBe(8);
    expect(all.keptFraction).toBe(1);
    expect(all.compression).toBeLessThanOrEqual(1);
    for (const x of r.results) {
      expect(x.tokens).toBe(301);
      expect(x.bytesFullEquivalent).toBe(301 * BYTES_PER_TOKEN);
      expect(x.layers).toHaveLength(5);
      expect(x.layers.reduce((a, l) => a + l.bytesInUse, 0)).toBe(x.bytesInUse);
      expect(x.agreement).toBeGreaterThanOrEqual(0);
      expect(x.agreement).toBeLessThanOrEqual(1);
    }
    for (let i = 1; i < r.results.length; i++) expect(r.results[i].compression).toBeGreaterThanOrEqual(r.results[i - 1].compression);
    // τ = 1e9: only the window (128) and the last batch stay of 301 tokens
    expect(rest[rest.length - 1].compression).toBeGreaterThan(1.5);
  });
});
