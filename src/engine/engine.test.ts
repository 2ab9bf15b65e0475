import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { models } from "../../test/helpers/cli.js";
import { Model } from "./model.js";
import { PromptTooLongError } from "./session.js";

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

describe("engine on stories260K", () => {
  let model: Model;
  beforeAll(async () => {
    const fractions: number[] = [];
    model = await Model.load(models.stories, { onProgress: (f) => fractions.push(f) });
    expect(fractions.at(-1)).toBe(1);
  });
  afterAll(() => model.dispose());

  it("exposes the model's shape", () => {
    expect(model.info).toMatchObject({ layers: 5, heads: 8, kvHeads: 4, embeddingSize: 64, vocabSize: 512, contextLength: 2048, chatTemplate: null });
  });

  it("tokenizes and detokenizes English text losslessly", () => {
    const text = 'Once upon a time, Lily saw a big red ball. "Wow!" she said.';
    const toks = model.tokenize(text);
    expect(toks[0]).toBe(model.info.bos);
    expect(model.detokenize(toks.slice(1))).toBe(text);
    expect(model.tokenize(text, { addSpecial: false })).toEqual(toks.slice(1));
  });

  it("streams UTF-8 text intact even when characters span tokens (byte fallback)", async () => {
    const session = await model.createSession({ contextSize: 256 });
    try {
      // The 512-token vocabulary spells non-ASCII characters as single-byte tokens.
      const text = "Zoë ate crème brûlée — 🍰.";
      const toks = model.tokenize(text, { addSpecial: false });
      expect(toks.length).toBeGreaterThan(text.length / 2);
      expect(model.detokenize(toks)).toBe(text);
      const { TokenTextStream } = await import("./text-stream.js");
      const stream = new TokenTextStream(model, []);
      let streamed = "";
      for (const t of toks) {
        const out = stream.push(t).text;
        expect(out).not.toMatch(/\uFFFD/);
        streamed += out;
      }
      streamed += stream.flush();
      expect(streamed).toBe(" " + text);
    } finally {
      session.dispose();
    }
  });

  it("streamed pieces concatenate to the result text", async () => {
    const session = await model.createSession({ contextSize: 512 });
    const pieces: string[] = [];
    const r = await session.generate(model.tokenize("Once upon a time"), { maxTokens: 30, temperature: 0, onText: (t) => pieces.push(t) });
    expect(pieces.join("")).toBe(r.text);
    expect(pieces.length).toBeGreaterThan(5);
    expect(r.tokens).toHaveLength(30);
    expect(r.stopReason).toBe("maxTokens");
    session.dispose();
  });

  it("reuses the prompt prefix held in memory with identical logits", async () => {
    const fresh = await model.createSession({ contextSize: 512 });
    const reuse = await model.createSession({ contextSize: 512 });
    try {
      const a = model.tokenize("Once upon a time, there was a little dog named Max.");
      const b = model.tokenize("Once upon a time, there was a little dog named Max. He liked to run in the park.");
      await reuse.setPrompt(a);
      const r = await reuse.setPrompt(b);
      expect(r.reused).toBe(a.length);
      expect(r.evaluated).toBe(b.length - a.length);
      await fresh.setPrompt(b);
      expect(maxRelDiff(reuse.logits(), fresh.logits())).toBeLessThan(1e-5);
      // A prompt that diverges early trims memory back to the common prefix.
      const c = model.tokenize("Once upon a time, there was a big cat.");
      const r2 = await reuse.setPrompt(c);
      expect(r2.reused).toBeLessThan(a.length);
      expect(reuse.tokens).toEqual(c);
      await fresh.setPrompt(c);
      expect(maxRelDiff(reuse.logits(), fresh.logits())).toBeLessThan(1e-5);
    } finally {
      fresh.dispose();
      reuse.dispose();
    }
  });

  it("continues a generation exactly as one long greedy generation", async () => {
    const s = await model.createSession({ contextSize: 512 });
    const prompt = model.tokenize("Once upon a time");
    const whole = await s.generate(prompt, { maxTokens: 30, temperature: 0 });
    s.clear();
    const first = await s.generate(prompt, { maxTokens: 12, temperature: 0 });
    const second = await s.generate([...prompt, ...first.tokens], { maxTokens: 18, temperature: 0 });
    expect(second.stats.reusedTokens).toBe(prompt.length + first.tokens.length - 1);
    expect([...first.tokens, ...second.tokens]).toEqual(whole.tokens);
    s.dispose();
  });

  it("top-k 1 sampling equals greedy; a seed makes sampling reproducible", async () => {
    const s = await model.createSession({ contextSize: 256 });
    const prompt = model.tokenize("The cat");
    const greedy = await s.generate(prompt, { maxTokens: 20, temperature: 0 });
    const topk1 = await s.generate(prompt, { maxTokens: 20, temperature: 1.5, topK: 1, seed: 3 });
    expect(topk1.tokens).toEqual(greedy.tokens);
    const a = await s.generate(prompt, { maxTokens: 20, temperature: 1.2, seed: 11, minP: 0 });
    const b = await s.generate(prompt, { maxTokens: 20, temperature: 1.2, seed: 11, minP: 0 });
    expect(a.tokens).toEqual(b.tokens);
    s.dispose();
  });

  it("aborts a running generation from a signal, keeping memory consistent", async () => {
    const s = await model.createSession({ contextSize: 2048 });
    const controller = new AbortController();
    let n = 0;
    const r = await s.generate(model.tokenize("Once upon a time"), {
      maxTokens: 1500,
      temperature: 0.9,
      seed: 1,
      signal: controller.signal,
      onText: () => {
        if (++n === 10) controller.abort();
      },
    });
    expect(r.stopReason).toBe("abort");
    expect(r.tokens.length).toBeLessThan(1500);
    expect(s.tokens.length).toBe(s.info.tokens);
    // The session stays usable after an abort.
    const after = await s.generate(model.tokenize("The end"), { maxTokens: 5, temperature: 0 });
    expect(after.tokens).toHaveLength(5);
    s.dispose();
  });

  it("refuses a prompt larger than the context with the size that would fit", async () => {
    const s = await model.createSession({ contextSize: 256 });
    const long = model.tokenize("the dog ran. ".repeat(100));
    await expect(s.setPrompt(long)).rejects.toThrow(PromptTooLongError);
    await expect(s.setPrompt(long)).rejects.toThrow(/the prompt is 602 tokens but the context holds 256; run with --ctx 1024 or more/);
    s.dispose();
  });

  it("disposes deterministically; a disposed session or model says so", async () => {
    const m = await Model.load(models.stories);
    const s = await m.createSession({ contextSize: 128 });
    m.dispose();
    expect(() => s.kvStats()).toThrow(/disposed/);
    expect(() => m.tokenize("hi")).toThrow(/disposed/);
  });

  it("disposing a model while it generates does not crash", async () => {
    const m = await Model.load(models.stories);
    const s = await m.createSession({ contextSize: 2048 });
    const p = s.generate(m.tokenize("Once upon a time"), { maxTokens: 1000, temperature: 1, seed: 2 });
    await new Promise((r) => setTimeout(r, 5));
    m.dispose();
    const r = await p.catch((e: Error) => e);
    expect(r instanceof Error ? r.message : r.stopReason).toMatch(/abort|disposed/);
  });
});

describe("prompt batching", () => {
  it("batch size does not change the logits for a prompt longer than one batch", async () => {
    // stories260K is F32: every batch shape computes the same sums. The q8_0 test-bed model goes through llama.cpp
    // kernels that quantize activations differently by batch shape, so it agrees to rounding only.
    for (const [file, tolerance] of [
      [models.stories, 1e-6],
      [models.testbed, 1e-2],
    ] as const) {
      const model = await Model.load(file);
      try {
        const prompt = model.tokenize("the detective looked at the letter. ".repeat(30));
        expect(prompt.length).toBeGreaterThan(200);
        const logits: Float32Array[] = [];
        for (const batchSize of [512, 64, 17]) {
          const s = await model.createSession({ contextSize: 1024, batchSize });
          await s.setPrompt(prompt);
          logits.push(s.logits());
          s.dispose();
        }
        expect(maxRelDiff(logits[1], logits[0])).toBeLessThan(tolerance);
        expect(maxRelDiff(logits[2], logits[0])).toBeLessThan(tolerance);
      } finally {
        model.dispose();
      }
    }
  });
});
