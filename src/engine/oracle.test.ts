// The KVzip+ oracle in the fork against a brute-force computation in JS from the same captured queries, keys, values,
// attn_norm rows and the model's own output projection (read from the GGUF file).
import { open } from "node:fs/promises";
import { readGgufFileInfo } from "node-llama-cpp";
import { describe, expect, it } from "vitest";
import { models } from "../../test/helpers/cli.js";
import { Model } from "./model.js";

async function readF32Tensor(file: string, name: string): Promise<{ data: Float32Array; dims: number[] }> {
  const info = await readGgufFileInfo(file, { logWarnings: false });
  const t = info.tensorInfo!.find((x) => x.name === name)!;
  expect(t.ggmlType).toBe(0);
  const dims = t.dimensions.map(Number);
  const n = dims.reduce((a, b) => a * b, 1);
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(n * 4);
    await fh.read(buf, 0, buf.length, Number(t.fileOffset));
    return { data: new Float32Array(buf.buffer, buf.byteOffset, n), dims };
  } finally {
    await fh.close();
  }
}

describe("KVzip+ oracle", () => {
  it("equals a dense brute-force computation on stories260K (1e-4 relative)", async () => {
    const model = await Model.load(models.stories);
    const s = await model.createSession({ contextSize: 256, batchSize: 16, kv: { policy: "kvzap", oracle: true, type: "f32" } });
    try {
      const ctx = model.tokenize("Once upon a time, there was a little dog named Max. Max liked to run.");
      const repeat = model.tokenize("\n\nRepeat the previous context exactly.\n\nOnce upon a time, there was a little dog named Max. Max liked to run.", { addSpecial: false });
      const all = [...ctx, ...repeat];
      await s.setPrompt(all);
      const n = all.length;
      const c0 = 0;
      const c1 = ctx.length;
      const q0 = n - (ctx.length - 1);
      const q1 = n;
      const got = await s.oracleScores([c0, c1], [q0, q1]);
      const { layers: L, heads: Hq, kvHeads: H, embeddingSize: D } = model.info;
      const dk = D / Hq;
      const G = Hq / H;
      const scale = 1 / Math.sqrt(dk);
      expect(got.length).toBe(L * (c1 - c0) * H);
      let worst = 0;
      let max = 0;
      for (let l = 0; l < L; l++) {
        const { q, k, v } = s.oracleRows(l, 0, n);
        const x = s.kvHidden(l, 0, n);
        const wo = await readF32Tensor(models.stories, `blk.${l}.attn_output.weight`); // ne0 = Hq·dv (in), ne1 = D (out)
        for (let i = c0; i < c1; i++) {
          for (let h = 0; h < H; h++) {
            let want = 0;
            for (let g = h * G; g < (h + 1) * G; g++) {
              // ‖W_O^(g) v_i‖
              const vi = v.subarray((h * n + i) * dk, (h * n + i + 1) * dk);
              let norm2 = 0;
              for (let r = 0; r < wo.dims[1]; r++) {
                let acc = 0;
                for (let a = 0; a < dk; a++) acc += wo.data[r * wo.dims[0] + g * dk + a] * vi[a];
                norm2 += acc * acc;
              }
              for (let j = q0; j < q1; j++) {
                const qj = q.subarray(j * Hq * dk + g * dk, j * Hq * dk + (g + 1) * dk);
                const logits = Array.from({ length: j + 1 }, (_, p) => {
                  let d = 0;
                  for (let e = 0; e < dk; e++) d += qj[e] * k[(h * n + p) * dk + e];
                  return d * scale;
                });
                const m = Math.max(...logits);
                const z = logits.reduce((a2, b) => a2 + Math.exp(b - m), 0);
                const xj = x.subarray(j * D, (j + 1) * D);
                const xn = Math.sqrt(xj.reduce((a2, b) => a2 + b * b, 0));
                want = Math.max(want, (Math.exp(logits[i] - m) / z) * (Math.sqrt(norm2) / xn));
              }
            }
            const g2 = got[(l * (c1 - c0) + (i - c0)) * H + h];
            worst = Math.max(worst, Math.abs(g2 - want));
            max = Math.max(max, want);
          }
        }
      }
      expect(max).toBeGreaterThan(0);
      expect(worst / max).toBeLessThanOrEqual(1e-4);
    } finally {
      s.dispose();
      model.dispose();
    }
  });
});
