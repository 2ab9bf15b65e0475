// The KVzap memory's contract on the real fixture models: the pool's physical memory follows the blocks in use,
// trims continue exactly as a fresh session would, statistics are consistent snapshots while a batch runs,
// prompt-only eviction keeps the question, budgets never drop protected pairs and fail before any work, and a
// failed state load leaves the memory empty.
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corpora, models } from "../../test/helpers/cli.js";
import { dequantizedCopy } from "../../test/helpers/dequantize.js";
import { randomProfileFor } from "../../test/helpers/kvzap.js";
import { relativeError } from "../calibrate/oracle-reference.js";
import type { Profile } from "../profiles/profile.js";
import type { KvOptions } from "./kv.js";
import { Model } from "./model.js";
import type { KvStats, Session } from "./session.js";

/** The pool commits physical memory in chunks of 2 MiB per region (K and V): see native/kvzap/kvzap-vmem.h. */
const CHUNK = 2 << 20;

async function textTokens(model: Model, n: number, offset = 40_000): Promise<number[]> {
  const text = (await readFile(`${corpora}/gutenberg-sherlock-holmes.txt`, "utf8")).slice(offset, offset + n * 8);
  const toks = model.tokenize(text);
  expect(toks.length).toBeGreaterThanOrEqual(n);
  return toks.slice(0, n);
}

function headsOf(st: KvStats): { entries: number; blocks: number }[] {
  return (st.layers ?? []).flatMap((l) => l.entries.map((e, h) => ({ entries: e, blocks: l.blocks[h] })));
}

async function withSession<T>(model: Model, opts: Parameters<Model["createSession"]>[0], fn: (s: Session) => Promise<T>): Promise<T> {
  const s = await model.createSession(opts);
  try {
    return await fn(s);
  } finally {
    s.dispose();
  }
}

describe("the KVzap memory on the test-bed model", () => {
  let model: Model;
  let profile: Profile;
  let prompt: number[];
  beforeAll(async () => {
    model = await Model.load(models.testbed);
    profile = await randomProfileFor("testbed", "linear");
    prompt = await textTokens(model, 460);
  });
  afterAll(() => model.dispose());

  it("commits pool memory as blocks are used and gives it back on eviction and clear; the full allocation is n_ctx's", async () => {
    await withSession(model, { contextSize: 16384, batchSize: 128, kv: { policy: "kvzap", profile, tau: 1e9, window: 64 } }, async (s) => {
      const empty = s.kvStats();
      expect(empty.poolBytes).toBe(0);
      // what a full cache of 16,384 positions allocates: 8 layers x 2 KV heads x (64 + 64) f16 values per position
      expect(empty.bytesFullAllocation).toBe(16384 * 8 * 2 * 2 * 64 * 2);
      expect(empty.poolReservedBytes).toBeGreaterThanOrEqual(empty.bytesFullAllocation);
      const long = await textTokens(model, 3000);
      await s.setPrompt(long);
      const st = s.kvStats();
      expect(st.tokens).toBe(3000);
      // only the window and the last batch are held, and the pool holds them and at most a chunk more per region
      expect(st.bytesInUse).toBeLessThan(st.bytesFullEquivalent / 10);
      expect(st.poolBytes).toBeGreaterThanOrEqual(st.bytesInUse);
      expect(st.poolBytes).toBeLessThanOrEqual(st.bytesInUse + 2 * CHUNK);
      for (const h of headsOf(st)) expect(h.blocks).toBe(Math.ceil(h.entries / 16));
      s.clear();
      expect(s.kvStats().poolBytes).toBe(0);
    });
  });

  it("holds its blocks in use and less than a chunk more per range, whatever the number of layers (the spill)", async () => {
    // Every pair kept, the prompt growing: 8 layers, each with a region of its own. A region that grew its own memory
    // chunk by chunk would hold a partly used chunk in each range (K and V), 16 in all; the blocks past a region's
    // whole chunks live in the spill, shared by all of them, so only the spill's last chunk is partly used.
    await withSession(model, { contextSize: 4096, batchSize: 256, kv: { policy: "kvzap", profile, tau: -1e9, window: 64 } }, async (s) => {
      for (const n of [700, 1500, 2300, 3100]) {
        await s.setPrompt(await textTokens(model, n));
        const st = s.kvStats();
        expect(st.tokens).toBe(n);
        expect(st.evicted).toBe(0);
        for (const h of headsOf(st)) expect(h.blocks).toBe(Math.ceil(n / 16));
        expect(st.poolChunkBytes).toBe(64 << 10); // host memory
        expect(st.poolBytes).toBeGreaterThanOrEqual(st.bytesInUse);
        expect(st.poolBytes - st.bytesInUse).toBeLessThan(2 * st.poolChunkBytes!);
      }
    });
  });

  it("keeps the high-water mark near the blocks in use when pairs leave from everywhere (lowest block first, compaction)", async () => {
    // τ in the middle of the random profile's scores: every head keeps some pairs and drops others
    await withSession(model, { contextSize: 8192, batchSize: 256, kv: { policy: "kvzap", profile, tau: -5, window: 32 } }, async (s) => {
      const long = await textTokens(model, 6000);
      await s.setPrompt(long);
      const st = s.kvStats();
      expect(st.evicted).toBeGreaterThan(0);
      expect(st.bytesInUse).toBeLessThan(st.bytesFullEquivalent * 0.9);
      expect(st.poolBytes).toBeLessThanOrEqual(st.bytesInUse * 1.125 + 2 * CHUNK);
    });
  });

  it("a trim continues as a fresh session on the same tokens does, and as the dense reference (in f32)", async () => {
    // in f32, so that the reference's stock attention and the block kernel agree to float rounding
    const f32 = await Model.load(dequantizedCopy(models.testbed));
    const kv: KvOptions = { policy: "kvzap", profile, tau: -5, window: 32 };
    const opts = { contextSize: 1024, batchSize: 128, flashAttention: false, kvType: "f32" as const };
    const edited = [...prompt.slice(0, 300), 7, 8, 9];
    const trimmed = async (k: KvOptions) =>
      withSession(f32, { ...opts, kv: k }, async (s) => {
        await s.setPrompt(prompt);
        if (!k.reference) expect(s.kvStats().evicted).toBeGreaterThan(0);
        await s.setPrompt(edited);
        expect(s.tokens).toEqual(edited);
        return s.logits();
      });
    try {
      const fresh = await withSession(f32, { ...opts, kv }, async (s) => {
        await s.setPrompt(edited);
        return s.logits();
      });
      expect(relativeError(await trimmed(kv), fresh)).toBeLessThanOrEqual(1e-6);
      expect(relativeError(await trimmed({ ...kv, reference: true }), fresh)).toBeLessThanOrEqual(1e-4);
    } finally {
      f32.dispose();
    }
  });

  it("a trim reuses the prefix when every pair the next query sees is still held", async () => {
    await withSession(model, { contextSize: 1024, batchSize: 128, kv: { policy: "kvzap", profile, tau: -1e9, window: 32 } }, async (s) => {
      await s.setPrompt(prompt);
      const r = await s.setPrompt([...prompt.slice(0, 300), 7, 8, 9]);
      expect(r.reused).toBe(300);
      expect(s.kvStats().tokens).toBe(303);
    });
  });

  it("with --kv-decoding off nothing is decided after the prompt: its tail in the window stays, and every generated pair", async () => {
    const window = 16;
    await withSession(model, { contextSize: 1024, batchSize: 128, kv: { policy: "kvzap", profile, tau: 1e9, window, decodeEviction: false } }, async (s) => {
      await s.generate(prompt, { maxTokens: 40, temperature: 0 });
      const st = s.kvStats();
      expect(st.tokens).toBeGreaterThan(prompt.length + window);
      // τ = 1e9 drops whatever is decided: the heads hold exactly the prompt's last `window` pairs and all generated
      for (const h of headsOf(st)) expect(h.entries).toBe(st.tokens! - (prompt.length - window));
    });
  });

  describe("a budget", () => {
    // 8 layers x 2 heads x 8 blocks of 16 pairs (4 KiB each in f16): 128 positions per head
    const budgetBytes = 16 * 8 * 4096;
    const kv = (): KvOptions => ({ policy: "kvzap", profile, tau: -1e9, window: 16, budgetBytes, decodeEviction: false });

    it("never drops protected pairs: generation fails with a clear message once they alone exceed it", async () => {
      await withSession(model, { contextSize: 1024, batchSize: 32, kv: kv() }, async (s) => {
        await s.setPrompt(prompt.slice(0, 200));
        expect(s.kvStats().budgetEvicted).toBeGreaterThan(0);
        await expect(s.generate(prompt.slice(0, 200), { maxTokens: 300, temperature: 0 })).rejects.toThrow(/budget cannot hold.*protected/);
        const st = s.kvStats();
        // everything protected is still there: the prompt's last window pairs and every generated one
        for (const h of headsOf(st)) expect(h.entries).toBeGreaterThanOrEqual(st.tokens! - (200 - 16));
        expect(st.bytesInUse).toBeLessThanOrEqual(budgetBytes);
      });
    });

    it("a batch that cannot fit fails before any of its ubatches runs", async () => {
      await withSession(model, { contextSize: 1024, batchSize: 128, ubatchSize: 32, kv: kv() }, async (s) => {
        await s.setPrompt(prompt.slice(0, 100));
        const g = await s.generate(prompt.slice(0, 100), { maxTokens: 81, temperature: 0 });
        const held = s.tokens.length;
        expect(held).toBe(180);
        // 96 protected pairs per head, then 96 new tokens in three ubatches: the second cannot fit
        await expect(s.setPrompt([...s.tokens, ...prompt.slice(100, 196)])).rejects.toThrow(/budget cannot hold/);
        expect(s.kvStats().tokens).toBe(held);
        expect(s.info.tokens).toBe(held);
        expect(g.tokens.length).toBe(81);
      });
    });
  });

  it("decides a ubatch's pairs on several threads exactly as on one: the same lists, rows, logits and counts", async () => {
    // With ubatches of 2048, the second ubatch first decides the 2016 positions that left the window, over 8 layers x
    // 2 KV heads: 32,256 decisions, which go to 3 of the 4 threads (a thread per 8,192 decisions at most), each a run
    // of heads, whose moves and freed blocks reach the pool after.
    const long = await textTokens(model, 3000);
    const cases: KvOptions[] = [
      { policy: "kvzap", profile, tau: -5, window: 32 },
      { policy: "random", keep: 0.25, seed: 3, window: 32 },
    ];
    for (const kv of cases) {
      const run = (threads: number) =>
        withSession(model, { contextSize: 4096, batchSize: 2048, ubatchSize: 2048, threads, kv }, async (s) => {
          await s.setPrompt(long);
          const st = s.kvStats();
          expect(st.evicted).toBeGreaterThan(0);
          expect(st.evicted).toBeLessThan(st.tokens! * 16 - 16 * 32);
          return { state: s.saveState().state, logits: s.logits(), heads: headsOf(st), evicted: st.evicted, poolBytes: st.poolBytes };
        });
      const one = await run(1);
      const four = await run(4);
      expect(four.heads).toEqual(one.heads);
      expect(four.evicted).toBe(one.evicted);
      expect(four.poolBytes).toBe(one.poolBytes);
      expect(four.logits).toEqual(one.logits);
      // the state holds every head's list in order (positions, scores) and its rows
      expect(Buffer.compare(four.state, one.state)).toBe(0);
    }
  });

  it("a state that fails to load leaves the memory empty and usable", async () => {
    const kv: KvOptions = { policy: "kvzap", profile, tau: -5, window: 32 };
    await withSession(model, { contextSize: 1024, batchSize: 128, kv }, async (a) => {
      await a.setPrompt(prompt);
      const saved = a.saveState();
      await withSession(model, { contextSize: 1024, batchSize: 128, kv }, async (b) => {
        await b.setPrompt(prompt.slice(0, 50));
        expect(() => b.loadState({ state: saved.state.subarray(0, Math.floor(saved.state.length / 2)), tokens: saved.tokens })).toThrow();
        expect(b.kvStats().tokens).toBe(0);
        expect(b.kvStats().poolBytes).toBe(0);
        expect(b.info.tokens).toBe(0);
        b.clear();
        await b.setPrompt(prompt);
        expect(relativeError(b.logits(), a.logits())).toBeLessThanOrEqual(1e-6);
      });
    });
  });
});

describe("live statistics", () => {
  it("are consistent snapshots while a worker thread changes the lists (window policy: every head alike)", async () => {
    const model = await Model.load(models.stories);
    try {
      const prompt = await textTokens(model, 1800);
      await withSession(model, { contextSize: 2048, batchSize: 4, threads: 1, kv: { policy: "window", window: 24, sinks: 4 } }, async (s) => {
        let polls = 0;
        let bad = 0;
        let done = false;
        const run = s.setPrompt(prompt).finally(() => (done = true));
        while (!done) {
          const heads = headsOf(s.kvStats());
          polls++;
          if (heads.some((h) => h.entries !== heads[0].entries || h.blocks !== Math.ceil(h.entries / 16))) bad++;
          await new Promise((r) => setImmediate(r));
        }
        await run;
        expect(polls).toBeGreaterThan(50);
        expect(bad).toBe(0);
      });
    } finally {
      model.dispose();
    }
  });
});
