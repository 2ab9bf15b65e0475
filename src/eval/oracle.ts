// KVzip+ oracle scores of a whole prompt, for the oracle policy: the prompt, "Repeat the previous context exactly."
// and the prompt again (in chunks, so that the session stays within the model's trained context), as calibration
// scores its prompts (src/calibrate/oracle.ts). Returns log s⁺ per layer, [position][KV head].
import type { Model } from "../engine/model.js";
import type { Session } from "../engine/session.js";
import { MIN_SCORE, REPEAT_CHUNK, repeatLayout } from "../calibrate/oracle.js";

/** The repeat chunk for a prompt of n tokens: as long as the trained context leaves room for (at least 64). */
export function oracleChunk(model: Model, n: number, middle: number): number {
  const trained = model.info.contextLength > 0 ? model.info.contextLength : 4096;
  return Math.max(64, Math.min(REPEAT_CHUNK, trained - n - middle - 1));
}

export async function openOracleSession(model: Model, n: number, threads?: number): Promise<{ session: Session; middle: number[]; chunk: number }> {
  const { middle } = repeatLayout(model);
  const chunk = oracleChunk(model, n, middle.length);
  const session = await model.createSession({ contextSize: n + middle.length + chunk + 1, threads, kv: { policy: "kvzap", oracle: true } });
  return { session, middle, chunk };
}

export async function promptOracleScores(
  model: Model,
  oracle: { session: Session; middle: number[]; chunk: number },
  prompt: readonly number[],
): Promise<Float32Array[]> {
  const { session, middle, chunk } = oracle;
  const L = model.info.layers;
  const H = model.info.kvHeads;
  const n = prompt.length;
  const R = n + middle.length;
  const start = model.info.addBos && prompt[0] === model.info.bos ? 1 : 0;
  const out = Array.from({ length: L }, () => new Float32Array(n * H));
  session.clear();
  for (let a = start; a < n; a += chunk) {
    const b = Math.min(n, a + chunk);
    await session.setPrompt([...prompt, ...middle, ...prompt.slice(a, b)]);
    const c0 = a === start ? 0 : a;
    const { scores } = await session.oracleScores([c0, b], [R, R + (b - a)]);
    const span = b - c0;
    for (let l = 0; l < L; l++) {
      for (let i = 0; i < span; i++) {
        for (let h = 0; h < H; h++) out[l][(c0 + i) * H + h] = Math.log(Math.max(MIN_SCORE, scores[(l * span + i) * H + h]));
      }
    }
  }
  return out;
}
