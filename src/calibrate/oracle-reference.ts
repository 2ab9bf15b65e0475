// A brute-force KVzip+ computation from captured tensors, in float64: the reference the fork's oracle is checked
// against (tests on the CPU, scripts/gpu/check-kvzap.mjs on the GPU machine).
import { open } from "node:fs/promises";
import { readGgufFileInfo } from "node-llama-cpp";
import type { Session } from "../engine/session.js";

/** An F32 tensor of a GGUF file, row-major with dims in ggml order (dims[0] varies fastest). */
export async function readF32Tensor(file: string, name: string): Promise<{ data: Float32Array; dims: number[] }> {
  const info = await readGgufFileInfo(file, { logWarnings: false });
  const t = info.tensorInfo?.find((x) => x.name === name);
  if (!t) throw new Error(`no tensor ${name} in ${file}`);
  if (t.ggmlType !== 0) throw new Error(`tensor ${name} is not F32`);
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

/**
 * s⁺ for context positions [c0, c1) over queries [q0, q1) of an oracle session whose model file has F32 attention
 * output weights: [layer][i - c0][KV head].
 */
export async function bruteForceOracle(session: Session, modelFile: string, context: [number, number], queries: [number, number]): Promise<Float64Array> {
  const { layers: L, heads: Hq, kvHeads: H, embeddingSize: D } = session.model.info;
  const [c0, c1] = context;
  const [q0, q1] = queries;
  const n = q1;
  const dk = D / Hq;
  const G = Hq / H;
  const scale = 1 / Math.sqrt(dk);
  const out = new Float64Array(L * (c1 - c0) * H);
  for (let l = 0; l < L; l++) {
    const { q, k, v } = session.oracleRows(l, 0, n);
    const x = session.kvHidden(l, 0, n);
    const wo = await readF32Tensor(modelFile, `blk.${l}.attn_output.weight`); // ne0 = Hq·dv (in), ne1 = D (out)
    for (let i = c0; i < c1; i++) {
      for (let h = 0; h < H; h++) {
        let best = 0;
        for (let g = h * G; g < (h + 1) * G; g++) {
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
            const z = logits.reduce((acc, b) => acc + Math.exp(b - m), 0);
            const xj = x.subarray(j * D, (j + 1) * D);
            const xn = Math.sqrt(xj.reduce((acc, b) => acc + b * b, 0));
            best = Math.max(best, (Math.exp(logits[i] - m) / z) * (Math.sqrt(norm2) / xn));
          }
        }
        out[(l * (c1 - c0) + (i - c0)) * H + h] = best;
      }
    }
  }
  return out;
}

/** max |got - want| / max |want| (NaN or a length mismatch never passes: it gives Infinity). */
export function relativeError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (Number.isNaN(d)) return Infinity;
    num = Math.max(num, d);
    den = Math.max(den, Math.abs(want[i]));
  }
  return den > 0 ? num / den : num;
}
