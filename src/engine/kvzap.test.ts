// KVzap inside the fork, on the real fixture models: exactness against the stock path, the visibility rule against a
// dense reference, the surrogate against a direct computation, and the memory the blocks really hold.
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { models, corpora } from "../../test/helpers/cli.js";
import { dequantizedCopy } from "../../test/helpers/dequantize.js";
import { erf, randomProfileFor } from "../../test/helpers/kvzap.js";
import { relativeError } from "../calibrate/oracle-reference.js";
import type { Profile } from "../profiles/profile.js";
import type { KvOptions } from "./kv.js";
import { Model } from "./model.js";

// The test-bed model ships as Q8_0: llama.cpp quantizes activations to 8 bits for its matmuls, so any difference in
// rounding (even 1e-7 in an attention output) can flip an int8 step. Exactness is checked on its exact F32 copy
// ("in f32"); the Q8_0 file itself is checked at the level two stock batch sizes agree to.
const fixtures = [
  { name: "stories", file: models.stories, profileOf: "stories" as const },
  { name: "testbed (in f32)", file: dequantizedCopy(models.testbed), profileOf: "testbed" as const },
];

async function promptTokens(model: Model, minTokens: number): Promise<number[]> {
  const text = (await readFile(`${corpora}/gutenberg-sherlock-holmes.txt`, "utf8")).slice(40_000, 40_000 + minTokens * 8);
  const toks = model.tokenize(text);
  expect(toks.length).toBeGreaterThanOrEqual(minTokens);
  return toks.slice(0, minTokens);
}

/** Logits after the prompt and the greedy continuation, in f32 without flash attention (the stock path in f32). */
async function runOnce(model: Model, prompt: number[], opts: { kv?: KvOptions; batchSize?: number; contextSize?: number; generate?: number }) {
  const s = await model.createSession({
    contextSize: opts.contextSize ?? 1024,
    batchSize: opts.batchSize ?? 512,
    flashAttention: false,
    kvType: "f32",
    kv: opts.kv,
  });
  try {
    await s.setPrompt(prompt);
    const logits = s.logits();
    const gen = opts.generate ? await s.generate(prompt, { maxTokens: opts.generate, temperature: 0 }) : undefined;
    return { logits, tokens: gen?.tokens ?? [], stats: s.kvStats(), session: s };
  } finally {
    s.dispose();
  }
}

describe.each(fixtures)("KVzap on $name", ({ file, profileOf }) => {
  let model: Model;
  let profile: Profile;
  let prompt: number[];
  beforeAll(async () => {
    model = await Model.load(file);
    profile = await randomProfileFor(profileOf, "linear");
    prompt = await promptTokens(model, 300);
  });
  afterAll(() => model.dispose());

  it("with τ = -1e9 equals the stock path: logits within 1e-5, same greedy tokens, for several batch sizes", async () => {
    const stock = await runOnce(model, prompt, { generate: 24 });
    expect(stock.stats.policy).toBe("full");
    for (const batchSize of [512, 64, 7]) {
      const kz = await runOnce(model, prompt, { batchSize, generate: 24, kv: { policy: "kvzap", profile, tau: -1e9, window: 32 } });
      expect(relativeError(kz.logits, stock.logits)).toBeLessThanOrEqual(1e-5);
      expect(kz.tokens).toEqual(stock.tokens);
      expect(kz.stats.evicted).toBe(0);
    }
  });

  it("equals a dense reference of the same visibility rule for random τ, windows and batch sizes (1e-4)", async () => {
    let rnd = 12345;
    const next = () => (rnd = (rnd * 1103515245 + 12345) >>> 0) / 2 ** 32;
    let evictedSomewhere = false;
    for (let trial = 0; trial < 4; trial++) {
      const tau = -4 + next() * 6; // the random profile's scores sit around -5 ± a few
      const window = [0, 8, 40, 100][trial];
      const batchSize = [512, 33, 64, 5][trial];
      const kv: KvOptions = { policy: "kvzap", profile, tau, window };
      const kz = await runOnce(model, prompt, { batchSize, generate: 12, kv });
      const ref = await runOnce(model, prompt, { batchSize, generate: 12, kv: { ...kv, reference: true } });
      expect(relativeError(kz.logits, ref.logits)).toBeLessThanOrEqual(1e-4);
      expect(kz.tokens).toEqual(ref.tokens);
      evictedSomewhere ||= (kz.stats.evicted ?? 0) > 0;
    }
    expect(evictedSomewhere).toBe(true);
  });

  it("the window policy keeps the sinks and the recent window, like its dense reference", async () => {
    const kv: KvOptions = { policy: "window", window: 24, sinks: 4 };
    const kz = await runOnce(model, prompt, { batchSize: 64, generate: 8, kv });
    const ref = await runOnce(model, prompt, { batchSize: 64, generate: 8, kv: { ...kv, reference: true } });
    expect(relativeError(kz.logits, ref.logits)).toBeLessThanOrEqual(1e-4);
    expect(kz.tokens).toEqual(ref.tokens);
    // after prompt and generation, each head holds the 4 sinks plus at most the window and the last ubatch
    for (const layer of kz.stats.layers ?? []) for (const e of layer.entries) expect(e).toBeLessThanOrEqual(4 + 24 + 64);
  });
});

describe("KVzap on the Q8_0 test-bed model as shipped", () => {
  it("with τ = -1e9 generates the stock path's greedy tokens, logits as close as stock batch sizes are", async () => {
    const model = await Model.load(models.testbed);
    try {
      const profile = await randomProfileFor("testbed", "linear");
      const prompt = await promptTokens(model, 300);
      const stock = await runOnce(model, prompt, { generate: 24 });
      const kz = await runOnce(model, prompt, { generate: 24, kv: { policy: "kvzap", profile, tau: -1e9 } });
      expect(kz.tokens).toEqual(stock.tokens);
      expect(relativeError(kz.logits, stock.logits)).toBeLessThan(1e-2);
    } finally {
      model.dispose();
    }
  });
});

describe("KVzap decoding", () => {
  it("reuses the last step's graph while the longest list stays within its 32-block width (the block table stays in place)", async () => {
    const model = await Model.load(models.testbed);
    try {
      const profile = await randomProfileFor("testbed", "linear");
      const prompt = await promptTokens(model, 300);
      const reused = async (kv: KvOptions | undefined) => {
        const s = await model.createSession({ contextSize: 1024, batchSize: 512, kv });
        try {
          await s.generate(prompt, { maxTokens: 65, temperature: 0 });
          return s.info.graphsReused;
        } finally {
          s.dispose();
        }
      };
      const stock = await reused(undefined);
      const kz = await reused({ policy: "kvzap", profile, tau: -1e9 });
      // 64 decode steps: stock rebuilds only at its own shape changes; KVzap also when the longest list outgrows the
      // table's width, rounded up to 32 blocks (512 positions): not between positions 300 and 365
      expect(stock).toBeGreaterThanOrEqual(60); // measured 63 of 64
      expect(kz).toBeGreaterThanOrEqual(stock); // measured 63 and 63
    } finally {
      model.dispose();
    }
  });
});

describe("KVzap with q8_0 KV", () => {
  it("stores q8_0 rows and, keeping every pair, agrees with stock llama.cpp's q8_0 cache", async () => {
    const model = await Model.load(dequantizedCopy(models.testbed));
    try {
      const profile = await randomProfileFor("testbed", "linear");
      const prompt = await promptTokens(model, 300);
      const run = async (kv: KvOptions | undefined, kvType: "q8_0" | "f32") => {
        // stock needs flash attention for a quantized V cache
        const s = await model.createSession({ contextSize: 1024, batchSize: 512, flashAttention: kv ? undefined : true, kvType, kv });
        try {
          await s.setPrompt(prompt);
          return { logits: s.logits(), stats: s.kvStats() };
        } finally {
          s.dispose();
        }
      };
      const stock = await run(undefined, "q8_0");
      const kz = await run({ policy: "kvzap", profile, tau: -1e9 }, "q8_0");
      const exact = await run({ policy: "kvzap", profile, tau: -1e9 }, "f32");
      // 34 bytes per 32 values, K and V, per layer and KV head
      const info = model.info;
      expect(kz.stats.bytesFullEquivalent).toBe(prompt.length * info.layers * info.kvHeads * 2 * ((info.embeddingSize / info.heads / 32) * 34));
      const q8Error = relativeError(kz.logits, exact.logits);
      // measured 3.9e-3 against the same pairs in f32, and 6.5e-3 against stock, which also rounds Q to 8 bits
      expect(q8Error).toBeGreaterThan(1e-4); // the rows really were quantised
      expect(q8Error).toBeLessThan(1e-2);
      expect(relativeError(kz.logits, stock.logits)).toBeLessThan(1e-2);
    } finally {
      model.dispose();
    }
  });
});

describe("the surrogate in the graph", () => {
  for (const kind of ["linear", "mlp"] as const) {
    it(`${kind}: in-graph scores equal f(attn_norm) computed from the captured hidden states (1e-5)`, async () => {
      const model = await Model.load(models.testbed);
      const profile = await randomProfileFor("testbed", kind, 7);
      const prompt = await promptTokens(model, 150);
      const s = await model.createSession({ contextSize: 512, batchSize: 64, kv: { policy: "kvzap", profile, tau: -1e9, captureHidden: true } });
      try {
        await s.setPrompt(prompt);
        const D = model.info.embeddingSize;
        const H = model.info.kvHeads;
        let worst = 0;
        for (let l = 0; l < model.info.layers; l++) {
          const x = s.kvHidden(l, 0, prompt.length);
          const got = s.kvScores(l, 0, prompt.length);
          const w = profile.layers[l];
          let scale = 0;
          let err = 0;
          for (let p = 0; p < prompt.length; p++) {
            const xp = x.subarray(p * D, (p + 1) * D);
            let want: number[];
            if (w.kind === "linear") {
              want = Array.from({ length: H }, (_, h) => w.bias[h] + dot(w.weight.subarray(h * D, (h + 1) * D), xp));
            } else {
              const hid = Array.from({ length: w.hidden }, (_, j) => {
                const z = w.b1[j] + dot(w.w1.subarray(j * D, (j + 1) * D), xp);
                return 0.5 * z * (1 + erf(z / Math.SQRT2));
              });
              want = Array.from({ length: H }, (_, h) => w.b2[h] + hid.reduce((a, v, j) => a + v * w.w2[h * w.hidden + j], 0));
            }
            for (let h = 0; h < H; h++) {
              err = Math.max(err, Math.abs(got[p * H + h] - want[h]));
              scale = Math.max(scale, Math.abs(want[h]));
            }
          }
          worst = Math.max(worst, err / scale);
        }
        expect(worst).toBeLessThanOrEqual(1e-5);
      } finally {
        s.dispose();
        model.dispose();
      }
    });
  }
});

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

describe("KV memory that is really freed", () => {
  let model: Model;
  let profile: Profile;
  let prompt: number[];
  beforeAll(async () => {
    model = await Model.load(models.testbed);
    profile = await randomProfileFor("testbed", "linear", 3);
    prompt = await promptTokens(model, 460);
  });
  afterAll(() => model.dispose());

  async function statsAt(kv: KvOptions, contextSize = 1024) {
    const s = await model.createSession({ contextSize, batchSize: 128, kv });
    try {
      await s.setPrompt(prompt);
      return s.kvStats();
    } finally {
      s.dispose();
    }
  }

  it("bytes in use are the blocks held times the block size, and fall as τ rises", async () => {
    let last = Infinity;
    for (const tau of [-1e9, -6, -5, -4, 1e9]) {
      const st = await statsAt({ policy: "kvzap", profile, tau });
      const blocks = (st.layers ?? []).flatMap((l) => l.blocks).reduce((a, b) => a + b, 0);
      const entries = (st.layers ?? []).flatMap((l) => l.entries);
      expect(st.bytesInUse).toBe(
        blocks *
          (st.layers![0].bytesInUse /
            Math.max(
              1,
              st.layers![0].blocks.reduce((a, b) => a + b, 0),
            )),
      );
      // every head's blocks are exactly what its entries need
      for (const l of st.layers ?? []) l.entries.forEach((e, h) => expect(l.blocks[h]).toBe(Math.ceil(e / 16)));
      expect(st.bytesInUse).toBeLessThanOrEqual(last);
      last = st.bytesInUse;
      if (tau === -1e9) expect(Math.min(...entries)).toBe(prompt.length);
    }
  });

  /** Layer 0's surrogate scores of `tokens`, from a session that keeps every pair: [position][KV head]. */
  async function layer0Scores(tokens: number[], batchSize: number): Promise<Float32Array> {
    const s = await model.createSession({ contextSize: 1024, batchSize, kv: { policy: "kvzap", profile, tau: -1e9 } });
    try {
      await s.setPrompt(tokens);
      return s.kvScores(0, 0, tokens.length);
    } finally {
      s.dispose();
    }
  }

  it("with τ = 1e9 a 460-token prompt keeps well under 60% of the full cache's bytes", async () => {
    const st = await statsAt({ policy: "kvzap", profile, tau: 1e9 });
    expect(st.tokens).toBe(460);
    // the window (128) and the last ubatch's tokens stay
    expect(st.bytesInUse / st.bytesFullEquivalent).toBeLessThan(0.6);
    expect(st.bytesFullEquivalent).toBe(460 * 8 * 2 * 2 * 64 * 2);
  });

  it("a budget drops the lowest-scoring pairs first: every pair scoring above τ_effective stays", async () => {
    const full = 1024 * 8 * 2 * 2 * 64 * 2;
    const budgetBytes = Math.floor(full * 0.35);
    const s = await model.createSession({ contextSize: 1024, batchSize: 64, kv: { policy: "kvzap", profile, tau: -1e9, budgetBytes, captureHidden: true } });
    try {
      await s.setPrompt(prompt);
      const r = await s.generate(prompt, { maxTokens: 40, temperature: 0 });
      expect(r.tokens).toHaveLength(40);
      const st = s.kvStats();
      // the pool never holds more than the budget, but for its commit steps: 64 KiB per K and V region of a layer
      expect(st.poolBytes).toBeLessThanOrEqual(budgetBytes + 2 * 8 * 64 * 1024);
      expect(st.poolBytes).toBeLessThanOrEqual(st.poolReservedBytes!);
      // the budget is used, not undercut: eviction stops once the blocks fit
      expect(st.bytesInUse).toBeLessThanOrEqual(budgetBytes);
      expect(st.bytesInUse).toBeGreaterThan(0.75 * budgetBytes);
      expect(st.budgetEvicted).toBeGreaterThan(0);
      const tauEff = st.tauEffective!;
      expect(tauEff).toBeGreaterThan(-1e9);
      // by the scores: in layer 0, whose scores read only the embeddings (so a session that keeps everything gives
      // the same ones), no pair scoring above the final τ_effective was dropped (a few at the threshold may go either
      // way); pairs under it may stay when the budget had room for them at the time
      const n = st.tokens!;
      const window = st.window!;
      const heads = st.layers![0].entries.length;
      const scores = await layer0Scores([...prompt, ...r.tokens.slice(0, n - prompt.length)], 64);
      for (let h = 0; h < heads; h++) {
        let above = 0;
        for (let p = 0; p < n - window; p++) if (scores[p * heads + h] >= tauEff) above++;
        expect(above, `head ${h}`).toBeLessThanOrEqual(st.layers![0].entries[h] - window + 2);
      }
    } finally {
      s.dispose();
    }
  });

  // --batch: the keep rule runs at ubatch boundaries. Before a ubatch that starts at q0, pairs older than q0 − w with a
  // score under τ go; inside a ubatch every causal pair is visible (dense prefill). So with --batch T a query late in
  // a ubatch still sees pairs up to w + T − 1 back that a token-by-token run (T = 1, the rule exactly) would no longer
  // see: the logits depend on --batch. What is kept at the end of the prompt follows the rule for any T: the last w
  // positions and those scoring ≥ τ (layer 0's scores read only the embeddings, so its kept set is the same for all T).
  it("--batch changes what a prompt's queries see, not the rule the kept set follows", async () => {
    const short = prompt.slice(0, 200);
    const W = 32;
    const tau = -4;
    const layer0: number[][] = [];
    const logitsAt: Record<string, Float32Array> = {};
    const scores = await layer0Scores(short, 16);
    for (const batchSize of [1, 16, 200]) {
      for (const t of [tau, 1e9, -1e9]) {
        const s = await model.createSession({ contextSize: 512, batchSize, kv: { policy: "kvzap", profile, tau: t, window: W, captureHidden: true } });
        try {
          await s.setPrompt(short);
          logitsAt[`${batchSize}@${t}`] = s.logits();
          if (t !== tau) continue;
          const st = s.kvStats();
          const heads = st.layers![0].entries.length;
          const rule = Array.from({ length: heads }, (_, h) => {
            let kept = 0;
            for (let p = 0; p < short.length; p++) if (p >= short.length - W || scores[p * heads + h] >= tau) kept++;
            return kept;
          });
          expect(st.layers![0].entries, `--batch ${batchSize}`).toEqual(rule);
          layer0.push(st.layers![0].entries);
          // every layer keeps at least the window, and no more than the prompt
          for (const layer of st.layers!) for (const e of layer.entries) expect(e >= W && e <= short.length).toBe(true);
        } finally {
          s.dispose();
        }
      }
    }
    expect(layer0[1]).toEqual(layer0[0]);
    expect(layer0[2]).toEqual(layer0[0]);
    // nothing dropped (τ = -1e9): the batch size changes only rounding; only the window kept (τ = 1e9): what the
    // prompt's last queries saw differs with the batch size, and so do the logits
    // (this model is Q8_0: its int8 activations round differently per batch size, about 2e-3 here)
    const rounding = relativeError(logitsAt["200@-1000000000"], logitsAt["1@-1000000000"]);
    expect(rounding).toBeLessThan(1e-2);
    expect(relativeError(logitsAt["200@1000000000"], logitsAt["1@1000000000"])).toBeGreaterThan(20 * rounding);
    expect(relativeError(logitsAt["16@1000000000"], logitsAt["1@1000000000"])).toBeGreaterThan(10 * rounding);
  });

  it("with --kv-decoding off, generated tokens are never dropped", async () => {
    const s = await model.createSession({ contextSize: 1024, batchSize: 128, kv: { policy: "kvzap", profile, tau: 1e9, window: 16, decodeEviction: false } });
    try {
      const r = await s.generate(prompt, { maxTokens: 60, temperature: 0 });
      const st = s.kvStats();
      // the prompt's pairs outside the window went; every generated one stayed (the last sampled is not decoded)
      const kept = st.layers![0].entries[0];
      expect(kept).toBeGreaterThanOrEqual(r.tokens.length - 1);
      expect(kept).toBeLessThan(prompt.length);
    } finally {
      s.dispose();
    }
  });

  it("state save and load round-trips the per-head lists", async () => {
    const a = await model.createSession({ contextSize: 1024, batchSize: 128, kv: { policy: "kvzap", profile, tau: -5 } });
    const b = await model.createSession({ contextSize: 1024, batchSize: 128, kv: { policy: "kvzap", profile, tau: -5 } });
    try {
      await a.setPrompt(prompt);
      const saved = a.saveState();
      b.loadState(saved);
      expect(b.kvStats().layers).toEqual(a.kvStats().layers);
      const ra = await a.generate([...prompt, 42], { maxTokens: 20, temperature: 0 });
      const rb = await b.generate([...prompt, 42], { maxTokens: 20, temperature: 0 });
      expect(rb.tokens).toEqual(ra.tokens);
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it("removing a suffix whose window pairs are partly gone starts over (see kvzap-memory.test.ts), and evaluation goes on", async () => {
    const s = await model.createSession({ contextSize: 1024, batchSize: 128, kv: { policy: "kvzap", profile, tau: -5, window: 32 } });
    try {
      await s.setPrompt(prompt);
      const shorter = prompt.slice(0, 300);
      const r = await s.setPrompt([...shorter, 7, 8, 9]);
      expect(r.reused).toBe(0);
      expect(s.kvStats().tokens).toBe(303);
    } finally {
      s.dispose();
    }
  });
});
