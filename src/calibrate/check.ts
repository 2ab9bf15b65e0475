// --check: what the fitted profile costs in quality. Held-out text goes through a full cache and through KVzap at the
// chosen τ, 64 tokens per evaluation so that eviction acts between batches as it does in a long prompt; we compare
// perplexity and the KL divergence of KVzap's next-token distribution from the full cache's.
import type { Model } from "../engine/model.js";
import type { Session } from "../engine/session.js";
import type { KvProfile } from "../engine/kv.js";

export const CHECK_BATCH = 64;

export interface CheckReport {
  tokens: number;
  segments: number;
  tau: number;
  window: number;
  perplexityFull: number;
  perplexityKvzap: number;
  /** (kvzap − full) / full. */
  perplexityChange: number;
  /** Mean KL(full ‖ kvzap) per predicted token, in nats. */
  klMean: number;
  klMax: number;
  /** The share of positions where both pick the same most likely next token. */
  top1Agreement: number;
  /** bytesFullEquivalent / bytesInUse of KVzap's memory at the end of each segment, summed. */
  compression: number;
  seconds: number;
}

export function logSoftmax(logits: Float32Array, offset: number, vocab: number, out: Float64Array): void {
  let max = -Infinity;
  for (let i = 0; i < vocab; i++) max = Math.max(max, logits[offset + i]);
  let z = 0;
  for (let i = 0; i < vocab; i++) z += Math.exp(logits[offset + i] - max);
  const lz = max + Math.log(z);
  for (let i = 0; i < vocab; i++) out[i] = logits[offset + i] - lz;
}

export function argmax(v: Float64Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

async function allLogits(session: Session, tokens: readonly number[], signal?: AbortSignal): Promise<Float32Array | null> {
  session.clear();
  const vocab = session.model.info.vocabSize;
  const out = new Float32Array(tokens.length * vocab);
  for (let a = 0; a < tokens.length; a += CHECK_BATCH) {
    if (signal?.aborted) return null;
    const part = await session.evaluateAll(tokens.slice(a, a + CHECK_BATCH));
    out.set(part, a * vocab);
  }
  return out;
}

/** Perplexity and KL(full ‖ kvzap) over `segments` (token lists starting with BOS), each scored on its own. */
export async function checkQuality(
  model: Model,
  profile: KvProfile,
  tau: number,
  window: number,
  segments: readonly number[][],
  s: { threads?: number; onProgress?: (done: number, total: number) => void; signal?: AbortSignal },
): Promise<CheckReport | null> {
  const started = performance.now();
  const contextSize = Math.max(...segments.map((t) => t.length)) + 1;
  const common = { contextSize, threads: s.threads, batchSize: CHECK_BATCH };
  const full = await model.createSession(common);
  const kvzap = await model.createSession({ ...common, kv: { policy: "kvzap", profile, tau, window } });
  const vocab = model.info.vocabSize;
  const lf = new Float64Array(vocab);
  const lk = new Float64Array(vocab);
  let nllFull = 0;
  let nllKv = 0;
  let kl = 0;
  let klMax = 0;
  let agree = 0;
  let count = 0;
  let inUse = 0;
  let fullBytes = 0;
  try {
    for (let k = 0; k < segments.length; k++) {
      const tokens = segments[k];
      const a = await allLogits(full, tokens, s.signal);
      const b = a && (await allLogits(kvzap, tokens, s.signal));
      if (!a || !b) return null;
      const st = kvzap.kvStats();
      inUse += st.bytesInUse;
      fullBytes += st.bytesFullEquivalent;
      for (let t = 0; t + 1 < tokens.length; t++) {
        logSoftmax(a, t * vocab, vocab, lf);
        logSoftmax(b, t * vocab, vocab, lk);
        const next = tokens[t + 1];
        nllFull -= lf[next];
        nllKv -= lk[next];
        let d = 0;
        for (let i = 0; i < vocab; i++) {
          const p = Math.exp(lf[i]);
          if (p > 0) d += p * (lf[i] - lk[i]);
        }
        d = Math.max(0, d);
        kl += d;
        klMax = Math.max(klMax, d);
        if (argmax(lf) === argmax(lk)) agree++;
        count++;
      }
      s.onProgress?.(k + 1, segments.length);
    }
  } finally {
    full.dispose();
    kvzap.dispose();
  }
  const pf = Math.exp(nllFull / count);
  const pk = Math.exp(nllKv / count);
  return {
    tokens: count,
    segments: segments.length,
    tau,
    window,
    perplexityFull: pf,
    perplexityKvzap: pk,
    perplexityChange: (pk - pf) / pf,
    klMean: kl / count,
    klMax,
    top1Agreement: agree / count,
    compression: fullBytes / inUse,
    seconds: (performance.now() - started) / 1000,
  };
}
