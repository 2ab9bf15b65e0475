// The oracle as calibrate uses it, on stories260K: KVzip+ scores against a brute force in JS that rebuilds Q, K and V
// from the captured attn_norm rows and the model's own weights (read from the GGUF, RoPE applied here), so that the
// capture, the projections and the scoring are all checked; the chunked pass and the repeat layouts.
import { open } from "node:fs/promises";
import { readGgufFileInfo } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { models } from "../../test/helpers/cli.js";
import type { ChatMessage } from "../engine/model.js";
import { Model } from "../engine/model.js";
import { promptId } from "./data.js";
import { MIN_SCORE, REPEAT_INSTRUCTION, oraclePairs, repeatLayout, samplePositions, type ChatModel } from "./oracle.js";

async function readF32(file: string, name: string): Promise<Float32Array> {
  const info = await readGgufFileInfo(file, { logWarnings: false });
  const t = info.tensorInfo!.find((x) => x.name === name)!;
  expect(t.ggmlType).toBe(0);
  const n = t.dimensions.map(Number).reduce((a, b) => a * b, 1);
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(n * 4);
    await fh.read(buf, 0, buf.length, Number(t.fileOffset));
    return new Float32Array(buf.buffer, buf.byteOffset, n);
  } finally {
    await fh.close();
  }
}

/** y = W x for W stored [out][in] (GGUF ne0 = in). */
function matvec(w: Float32Array, x: Float32Array, out: number, inp: number): Float64Array {
  const y = new Float64Array(out);
  for (let r = 0; r < out; r++) {
    let s = 0;
    for (let c = 0; c < inp; c++) s += w[r * inp + c] * x[c];
    y[r] = s;
  }
  return y;
}

/** llama.cpp's NORM RoPE: adjacent pairs (2i, 2i+1) of each head turn by pos · base^(−2i/d). */
function rope(v: Float64Array, heads: number, d: number, pos: number, base = 10000): Float64Array {
  const out = new Float64Array(v.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < d; i += 2) {
      const theta = pos * Math.pow(base, -i / d);
      const [c, s] = [Math.cos(theta), Math.sin(theta)];
      const x0 = v[h * d + i];
      const x1 = v[h * d + i + 1];
      out[h * d + i] = x0 * c - x1 * s;
      out[h * d + i + 1] = x0 * s + x1 * c;
    }
  }
  return out;
}

describe("the KVzip+ oracle on stories260K", () => {
  let model: Model;
  beforeAll(async () => {
    model = await Model.load(models.stories);
  });
  afterAll(() => model.dispose());

  it("equals a brute force rebuilt from attn_norm rows and the GGUF weights", async () => {
    const s = await model.createSession({ contextSize: 128, batchSize: 16, kv: { policy: "kvzap", oracle: true }, kvType: "f32" });
    try {
      const layout = repeatLayout(model);
      expect(layout.templated).toBe(false);
      const text = "Tim had a red ball. He threw it to Sue, and Sue threw it back.";
      const T = model.tokenize(text, { addSpecial: false });
      const all = [...layout.prefix, ...T, ...layout.middle, ...T];
      await s.setPrompt(all);
      const n = all.length;
      const [c0, c1] = [0, layout.prefix.length + T.length];
      const [q0, q1] = [n - T.length, n];
      const { scores: got } = await s.oracleScores([c0, c1], [q0, q1], "cpu");
      const { layers: L, heads: Hq, kvHeads: H, embeddingSize: D } = model.info;
      const dk = D / Hq;
      const G = Hq / H;
      // the max over queries j and query heads g, built up per (layer, key, KV head)
      const want = new Float64Array(L * (c1 - c0) * H);
      for (let l = 0; l < L; l++) {
        const [wq, wk, wv, wo] = await Promise.all(["attn_q", "attn_k", "attn_v", "attn_output"].map((t) => readF32(models.stories, `blk.${l}.${t}.weight`)));
        const x = s.kvHidden(l, 0, n);
        const row = (p: number) => x.subarray(p * D, (p + 1) * D);
        const K = Array.from({ length: n }, (_, p) => rope(matvec(wk, row(p), H * dk, D), H, dk, p));
        const V = Array.from({ length: n }, (_, p) => matvec(wv, row(p), H * dk, D));
        const Q = Array.from({ length: n }, (_, p) => rope(matvec(wq, row(p), Hq * dk, D), Hq, dk, p));
        for (let h = 0; h < H; h++) {
          for (let g = h * G; g < (h + 1) * G; g++) {
            // ‖W_O^(g) v_i‖ for every key
            const vnorm = V.map((v) => {
              let n2 = 0;
              for (let r = 0; r < D; r++) {
                let a = 0;
                for (let e = 0; e < dk; e++) a += wo[r * D + g * dk + e] * v[h * dk + e];
                n2 += a * a;
              }
              return Math.sqrt(n2);
            });
            for (let j = q0; j < q1; j++) {
              const logits = Array.from({ length: j + 1 }, (_, i) => {
                let d = 0;
                for (let e = 0; e < dk; e++) d += Q[j][g * dk + e] * K[i][h * dk + e];
                return d / Math.sqrt(dk);
              });
              const m = Math.max(...logits);
              const z = logits.reduce((a, b) => a + Math.exp(b - m), 0);
              const xn = Math.hypot(...row(j));
              for (let i = c0; i < c1; i++) {
                const sc = (Math.exp(logits[i] - m) / z) * (vnorm[i] / xn);
                const at = (l * (c1 - c0) + (i - c0)) * H + h;
                want[at] = Math.max(want[at], sc);
              }
            }
          }
        }
      }
      let worst = 0;
      let max = 0;
      for (let k = 0; k < got.length; k++) {
        worst = Math.max(worst, Math.abs(got[k] - want[k]));
        max = Math.max(max, want[k]);
      }
      expect(got.length).toBe(L * (c1 - c0) * H);
      expect(max).toBeGreaterThan(0);
      expect(worst / max).toBeLessThan(1e-4);
    } finally {
      s.dispose();
    }
  });
  it("pairs are the sampled attn_norm rows and log s⁺, chunk by chunk", async () => {
    const s = await model.createSession({ contextSize: 256, batchSize: 32, kv: { policy: "kvzap", oracle: true }, kvType: "f32" });
    try {
      const layout = repeatLayout(model);
      const text = "Lily saw a big dog in the park. The dog was brown and had a long tail. Lily wanted to pet it, so she asked her mom.";
      const tokens = model.tokenize(text, { addSpecial: false });
      const prompt = { id: promptId(text), file: "t.txt", start: 0, end: text.length, text, tokens };
      const geo = { layers: model.info.layers, embeddingSize: model.info.embeddingSize, kvHeads: model.info.kvHeads };
      const chunk = 16;
      const pairs = (await oraclePairs(s, layout, prompt, geo, 5, { chunk, samples: 20 }))!;
      const P = layout.prefix.length;
      const n = P + tokens.length;
      const positions = samplePositions(n, 5, prompt.id, 20);
      expect(pairs.n).toBe(20);
      const D = geo.embeddingSize;
      const H = geo.kvHeads;
      // recompute chunk by chunk in a fresh session
      const ref = await model.createSession({ contextSize: 256, batchSize: 32, kv: { policy: "kvzap", oracle: true }, kvType: "f32" });
      try {
        const context = [...layout.prefix, ...tokens];
        const R = n + layout.middle.length;
        for (let a = 0; a < tokens.length; a += chunk) {
          const b = Math.min(tokens.length, a + chunk);
          await ref.setPrompt([...context, ...layout.middle, ...tokens.slice(a, b)]);
          const c0 = a === 0 ? 0 : P + a;
          const c1 = P + b;
          const { scores } = await ref.oracleScores([c0, c1], [R, R + b - a]);
          positions.forEach((p, k) => {
            if (p < c0 || p >= c1) return;
            for (let l = 0; l < geo.layers; l++) {
              for (let h = 0; h < H; h++) {
                const want2 = Math.log(Math.max(MIN_SCORE, scores[(l * (c1 - c0) + p - c0) * H + h]));
                expect(pairs.y[l][k * H + h]).toBeCloseTo(want2, 4);
              }
              if (a === 0) {
                const rows = ref.kvHidden(l, p, p + 1);
                expect(Array.from(pairs.x[l].subarray(k * D, (k + 1) * D))).toEqual(Array.from(rows));
              }
            }
          });
        }
      } finally {
        ref.dispose();
      }
      for (const y of pairs.y) for (const v of y) expect(Number.isFinite(v)).toBe(true);
    } finally {
      s.dispose();
    }
  });
});

describe("the repeat prompt", () => {
  /** A chat model whose template is `<u>…</u><a>…</a>`, one token per character (code points), BOS 1. */
  function chatModel(template: boolean): ChatModel {
    return {
      info: { bos: 1, addBos: true },
      hasChatTemplate: template,
      tokenize: (t) => Array.from(t, (c) => c.codePointAt(0)!),
      formatChat: (messages: ChatMessage[]) => ({
        text: messages.map((m) => (m.role === "user" ? `<u>${m.content}</u>` : `<a>${m.content}</a>`)).join(""),
        templated: template,
      }),
    };
  }
  const codes = (s: string) => Array.from(s, (c) => c.codePointAt(0)!);

  it("goes through the chat template when there is one: user = context + instruction, assistant = context", () => {
    const l = repeatLayout(chatModel(true));
    expect(l.templated).toBe(true);
    expect(l.prefix).toEqual([1, ...codes("<u>")]);
    expect(l.middle).toEqual(codes(`\n\n${REPEAT_INSTRUCTION}</u><a>`));
  });

  it("is plain text otherwise", () => {
    const l = repeatLayout(chatModel(false));
    expect(l.templated).toBe(false);
    expect(l.prefix).toEqual([1]);
    expect(l.middle).toEqual(codes(`\n\n${REPEAT_INSTRUCTION}\n\n`));
  });
});
