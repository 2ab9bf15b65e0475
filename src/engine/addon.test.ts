// The N-API boundary: every value passed from JS is checked before it reaches llama.cpp, and a bad one is a JS error
// that names it (never an abort, a crash or a silent default). The calls run in a child process, so that a native
// crash shows up as a failed case instead of killing the test runner.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { models } from "../../test/helpers/cli.js";
import { errorKind } from "../base/errors.js";
import { addonPath, loadAddon } from "./addon.js";
import { LoadAbortedError, Model } from "./model.js";

// [what is called, the error it must give]; `a` is the addon, `m` a loaded stories260K model, `c` a context of 64
// tokens holding a 5-token prompt (BOS and 4), `kv` valid window-policy options.
const cases: [string, RegExp][] = [
  // context options: every kind of bad value
  ["new a.Context(m, 'big')", /options must be an object/],
  ["new a.Context(m, { contextSize: NaN })", /options\.contextSize must be a finite number, got NaN/],
  ["new a.Context(m, { contextSize: -1 })", /options\.contextSize must be an integer in 0\.\./],
  ["new a.Context(m, { contextSize: 64.5 })", /options\.contextSize must be an integer/],
  ["new a.Context(m, { contextSize: '64' })", /options\.contextSize must be a finite number, got "64"/],
  ["new a.Context(m, { contextSize: 64, batchSize: 0 })", /options\.batchSize must be an integer in 1\.\./],
  ["new a.Context(m, { contextSize: 64, batchSize: 32, ubatchSize: 64 })", /options\.ubatchSize must be an integer in 1\.\.32/],
  ["new a.Context(m, { contextSize: 64, threads: 0 })", /options\.threads must be an integer in 1\.\./],
  ["new a.Context(m, { contextSize: 64, threadsBatch: Infinity })", /options\.threadsBatch must be a finite number, got Infinity/],
  ["new a.Context(m, { contextSize: 64, flashAttention: 'yes' })", /options\.flashAttention must be true or false/],
  // a ggml type id or a type the KVzap kernels do not read never reaches an abort
  ["new a.Context(m, { contextSize: 64, typeK: 999 })", /options\.typeK must be one of f16, f32, bf16, q8_0, got 999/],
  ["new a.Context(m, { contextSize: 64, typeV: 'q4_0' })", /options\.typeV must be one of f16, f32, bf16, q8_0, got "q4_0"/],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, typeK: 'q4_0' } })", /options\.kv\.typeK must be one of f16, f32, bf16, q8_0/],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, typeV: 8 } })", /options\.kv\.typeV must be one of/],
  // q8_0 rows hold blocks of 32 values: stories260K's heads have 8
  [
    "new a.Context(m, { contextSize: 64, typeK: 'q8_0', typeV: 'q8_0', flashAttention: true })",
    /K cache type q8_0 with block size 32 does not divide n_embd_head_k=8/,
  ],
  ["new a.Context(m, { contextSize: 64, kv: 5 })", /options\.kv must be an object/],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, policy: 'lru' } })", /options\.kv\.policy must be one of kvzap, window, random, scores, got "lru"/],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, policy: 'random', keep: 1.5 } })", /options\.kv\.keep must be in 0\.\.1, got 1\.5/],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, policy: 'scores', scores: 3 } })", /options\.kv\.scores must be an array of Float32Array/],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, policy: 'scores', scores: [[1, 2]] } })", /options\.kv\.scores\[0\]/],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, tau: NaN } })", /options\.kv\.tau must be a finite number/],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, window: -1 } })", /options\.kv\.window must be an integer in 0\.\./],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, sinks: 1.5 } })", /options\.kv\.sinks must be an integer/],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, blockSize: 0 } })", /options\.kv\.blockSize must be an integer in 1\.\.4096/],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, budgetBytes: -5 } })", /options\.kv\.budgetBytes must be an integer in 0\.\./],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, decodeEviction: 'no' } })", /options\.kv\.decodeEviction must be true or false/],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, surrogate: { kind: 'cubic', layers: [] } } })", /options\.kv\.surrogate\.kind must be one of linear, mlp/],
  ["new a.Context(m, { contextSize: 64, kv: { ...kv, surrogate: { kind: 'linear', layers: 3 } } })", /options\.kv\.surrogate\.layers must be an array/],
  [
    "new a.Context(m, { contextSize: 64, kv: { ...kv, surrogate: { kind: 'linear', layers: [{ w1: [1, 2], b1: new Float32Array(2) }] } } })",
    /options\.kv\.surrogate\.layers\[0\]\.w1 must be a Float32Array/,
  ],
  [
    "new a.Context(m, { contextSize: 64, kv: { ...kv, surrogate: { kind: 'mlp', layers: [{ w1: new Float32Array(2), b1: new Float32Array(2) }] } } })",
    /w2 and .*b2 are needed by an MLP surrogate/,
  ],
  // generation options
  ["c.generate({ maxTokens: 0 })", /options\.maxTokens must be an integer in 1\.\./],
  ["c.generate({ maxTokens: NaN })", /options\.maxTokens must be a finite number/],
  ["c.generate({ maxTokens: 4, temperature: -1 })", /options\.temperature must be in 0\.\./],
  ["c.generate({ maxTokens: 4, temperature: NaN })", /options\.temperature must be a finite number/],
  ["c.generate({ maxTokens: 4, topK: 2.5 })", /options\.topK must be an integer/],
  ["c.generate({ maxTokens: 4, topP: 1.5 })", /options\.topP must be in 0\.\.1/],
  ["c.generate({ maxTokens: 4, minP: -0.1 })", /options\.minP must be in 0\.\.1/],
  ["c.generate({ maxTokens: 4, seed: -1 })", /options\.seed must be an integer in 0\.\.4294967295/],
  ["c.generate({ maxTokens: 4, seed: 2 ** 32 })", /options\.seed must be an integer in 0\.\.4294967295/],
  ["c.generate({ maxTokens: 4, repeatPenalty: 0 })", /options\.repeatPenalty must be in/],
  ["c.generate({ maxTokens: 4, repeatLastN: -1 })", /options\.repeatLastN must be an integer in 0\.\./],
  ["c.generate({ maxTokens: 4 }, 'print')", /generate\(onToken\) must be a function/],
  // arguments of the context's methods
  ["c.evaluate([1, 2])", /evaluate\(tokens\) must be an Int32Array/],
  ["c.evaluate(Int32Array.of(1, 99999))", /evaluate\(tokens\) holds a token id out of range: 99999/],
  ["c.evaluate(Int32Array.of(1), 5)", /evaluate\(onProgress\) must be a function/],
  ["c.trim(-1)", /trim\(tokens\) must be an integer in 0\.\.5/],
  ["c.trim(9)", /trim\(tokens\) must be an integer in 0\.\.5/],
  ["c.trim('all')", /trim\(tokens\) must be a finite number/],
  ["c.kvScores(99, 0, 1)", /layer must be an integer in 0\.\./],
  ["c.kvHidden(0, 3, 1)", /p1 must be an integer in 3\.\.5/],
  ["c.oracleRows(0, 0, 1e9)", /p1 must be an integer in 0\.\.5/],
  ["c.oracleScores(0, 1, 0, NaN)", /oracleScores\(q1\) must be a finite number/],
  ["c.oracleScores(0, 1, 0, 2, 'gpu')", /the oracle device must be one of auto, cpu, cuda/],
  ["c.setEvicting('yes')", /setEvicting\(evicting\) must be true or false/],
  ["c.loadState('state')", /loadState\(state\) needs a Buffer/],
  ["{ const d = new a.Context(m, { contextSize: 32 }); d.dispose(); d.setEvicting(false); }", /the context has been disposed/],
  [
    "{ const d = new a.Context(m, { contextSize: 32 }); await d.evaluate(Int32Array.of(1, 2)); const p = d.generate({ maxTokens: 4 }); try { d.evaluate(Int32Array.of(1)); } finally { await p; } }",
    /the context is busy with another evaluation/,
  ],
  // the model's methods
  ["m.tokenize(5, true, false)", /tokenize\(text\) must be a string/],
  ["m.tokenize('hi', 'yes', false)", /tokenize\(addSpecial\) must be true or false/],
  // llama.cpp throws std::out_of_range for such an id, which ended the process
  ["m.detokenize(Int32Array.of(1e9), false, false)", /detokenize\(tokens\) holds a token id out of range: 1000000000/],
  ["m.detokenize([1], false, false)", /detokenize\(tokens\) must be an Int32Array/],
  ["m.tokenPiece(-1, false)", /tokenPiece\(token\) must be an integer in 0\.\.511/],
  ["m.isEog(1e9)", /isEog\(token\) must be an integer in 0\.\.511/],
  ["m.applyChatTemplate('hi', true)", /applyChatTemplate\(messages\) must be an array/],
  ["m.applyChatTemplate([{ role: 1, content: 'hi' }], true, 'chatml')", /messages\[0\]\.role must be a string/],
  ["a.setVerbose(1)", /setVerbose\(verbose\) must be true or false/],
  ["a.gpuDevice(-1)", /gpuDevice\(index\) must be an integer in 0\.\./],
  ["a.gpuDevice('0')", /gpuDevice\(index\) must be a finite number, got "0"/],
  // loading
  ["a.Model.load(5)", /Model\.load\(path\) must be a string/],
  ["a.Model.load(file, { gpuLayers: NaN })", /options\.gpuLayers must be a finite number/],
  ["a.Model.load(file, { useMmap: 'yes' })", /options\.useMmap must be true or false/],
  ["a.Model.load(file, {}, 'progress')", /Model\.load\(onProgress\) must be a function/],
  [
    "a.trainMlp(new Float32Array(1), new Float32Array(1), new Float32Array(4), new Uint32Array(1), { n: 1, d: 1, m: 1, h: 1, epochs: 1, batch: 1, lr: 1e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, clip: 1, device: 'tpu' })",
    /options\.device must be one of cpu, cuda/,
  ],
];

const child = `
const { createRequire } = await import("node:module");
const a = createRequire(import.meta.url)(process.env.ADDON);
const file = process.env.MODEL;
const lp = a.Model.load(file, {});
const m = await (lp.promise ?? lp);
const c = new a.Context(m, { contextSize: 64, typeK: "f32", typeV: "f32" });
await c.evaluate(m.tokenize("Once upon a time", true, false));
const kv = { policy: "window", tau: 0, window: 8, blockSize: 16, budgetBytes: 0, decodeEviction: true, reference: false, captureHidden: false, typeK: "f32", typeV: "f32" };
for (const code of JSON.parse(process.env.CASES)) {
  let error = null;
  try {
    const r = await new Function("a", "m", "c", "kv", "file", "return (async () => " + (code.startsWith("{") ? "{" + code.slice(1, -1) + "}" : "(" + code + ")") + ")()")(a, m, c, kv, file);
    await r?.promise;
  } catch (e) {
    error = { name: e?.constructor?.name, message: String(e?.message ?? e) };
  }
  process.stdout.write(JSON.stringify({ code, error }) + "\\n");
}
`;

describe("the addon's boundary", () => {
  it("turns a bad value of every kind into a JS error that names it, never a crash or a silent default", () => {
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", child], {
      env: { ...process.env, ADDON: addonPath(), MODEL: models.stories, CASES: JSON.stringify(cases.map(([code]) => code)) },
      encoding: "utf8",
      timeout: 60_000,
    });
    const results = new Map<string, { name: string; message: string } | null>();
    for (const line of r.stdout.split("\n").filter(Boolean)) {
      const { code, error } = JSON.parse(line) as { code: string; error: { name: string; message: string } | null };
      results.set(code, error);
    }
    const crashed = cases.find(([code]) => !results.has(code));
    expect(crashed, `the child ended (${r.signal ?? r.status}) at ${crashed?.[0]}: ${r.stderr.slice(-400)}`).toBeUndefined();
    for (const [code, want] of cases) {
      const error = results.get(code);
      expect(error, `${code} gave no error`).not.toBeNull();
      expect(error!.message, code).toMatch(want);
      expect(["Error", "TypeError", "RangeError"], code).toContain(error!.name);
    }
    expect(r.status).toBe(0);
  });

  it("accepts every option at its documented bounds", async () => {
    const addon = loadAddon();
    const model = await addon.Model.load(models.stories, { gpuLayers: 0, useMmap: true }).promise;
    try {
      const prompt = model.tokenize("Once upon a time", true, false);
      for (const type of ["f32", "f16", "bf16"] as const) {
        const kv = {
          policy: "window",
          tau: -1e9,
          window: 0,
          sinks: 0,
          blockSize: 4096,
          budgetBytes: 0,
          decodeEviction: false,
          reference: false,
          captureHidden: true,
          typeK: type,
          typeV: type,
        } as const;
        const c = new addon.Context(model, {
          contextSize: 64,
          batchSize: 64,
          ubatchSize: 64,
          threads: 1,
          threadsBatch: 1,
          flashAttention: false,
          typeK: type,
          typeV: type,
          kv,
        });
        await c.evaluate(prompt, undefined, false);
        const g = await c.generate({ maxTokens: 2, temperature: 0, topK: 0, topP: 1, minP: 0, seed: 0xffffffff, repeatPenalty: 1, repeatLastN: 0 });
        expect(g.tokens.length).toBe(2);
        expect(c.kvHidden(0, 0, 1).length).toBe(model.info().embeddingSize);
        c.trim(0);
        c.dispose();
      }
    } finally {
      model.dispose();
    }
  });

  it("gpuDevice(i) is systemInfo()'s i-th GPU, and undefined past the last one (every one in a CPU build)", () => {
    const a = loadAddon();
    const gpus = a.systemInfo().devices.filter((d) => d.type === "gpu");
    for (const [i, d] of gpus.entries()) {
      const g = a.gpuDevice(i);
      expect(g).toMatchObject({ name: d.name, description: d.description, type: "gpu", totalBytes: d.totalBytes });
      expect(g!.freeBytes).toBeGreaterThan(0);
      expect(g!.freeBytes).toBeLessThanOrEqual(g!.totalBytes);
    }
    expect(a.gpuDevice(gpus.length)).toBeUndefined();
  });
});

describe("aborting a model load", () => {
  // the weights of a model loaded with mmap are a mapping of its file: gone again once the model is freed
  const mapped = (file: string) => fs.readFileSync("/proc/self/maps", "utf8").includes(fs.realpathSync(file));

  it.runIf(process.platform === "linux")("rejects with a clear 'aborted' error and frees what it loaded; a later load works", async () => {
    const addon = loadAddon();
    expect(mapped(models.testbed)).toBe(false);
    // abort() right after the call: the worker stops at its first tensor, once the file is mapped (or before it starts)
    const load = addon.Model.load(models.testbed, { useMmap: true });
    load.abort();
    await expect(load.promise).rejects.toThrow(/^the model load was aborted$/);
    expect(mapped(models.testbed)).toBe(false);
    // abort() from the first progress report: llama.cpp has mapped the file and stops inside the load (a load this
    // small sometimes ends before the abort arrives, about 1 in 20 here: then it is freed by dispose, and tried again)
    let stopped = false;
    for (let i = 0; i < 8 && !stopped; i++) {
      const l: { promise: Promise<{ dispose(): void }>; abort(): void } = addon.Model.load(models.testbed, { useMmap: true }, () => l.abort());
      const r = await l.promise.catch((e: Error) => e);
      if (r instanceof Error) {
        expect(r.message).toBe("the model load was aborted");
        stopped = true;
      } else {
        r.dispose();
      }
      expect(mapped(models.testbed)).toBe(false);
    }
    expect(stopped).toBe(true);
    const again = addon.Model.load(models.testbed, { useMmap: true });
    const m = await again.promise;
    expect(mapped(models.testbed)).toBe(true);
    again.abort(); // after the load: no effect on the model
    expect(m.tokenize("hello", true, false).length).toBeGreaterThan(0);
    m.dispose();
    expect(mapped(models.testbed)).toBe(false);
  });

  it("stops mid-load from the engine's signal, with exit code 130", async () => {
    const controller = new AbortController();
    const fractions: number[] = [];
    const e = await Model.load(models.testbed, {
      useMmap: false,
      signal: controller.signal,
      onProgress: (f) => {
        fractions.push(f);
        controller.abort();
      },
    }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(LoadAbortedError);
    expect(errorKind(e)).toBe("interrupted"); // exit code 130
    expect((e as Error).message).toMatch(/the model load was aborted/);
    // it stopped before the end: the last fraction the load reported is below 1
    expect(Math.max(...fractions)).toBeLessThan(1);
    await expect(Model.load(models.testbed, { signal: AbortSignal.abort() })).rejects.toBeInstanceOf(LoadAbortedError);
  });
});
