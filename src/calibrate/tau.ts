// τ ↔ compression for a fitted surrogate, counted the way the KVzap memory counts: after a prompt of n tokens, each
// (layer, KV head) holds the pairs still in the window (positions p with n − 1 − p ≤ w: the last query sees w back)
// plus the older pairs whose score is ≥ τ, in blocks of `blockSize`; the full cache holds n pairs per head.
import type { Model } from "../engine/model.js";
import type { Session } from "../engine/session.js";
import type { TauPoint } from "../profiles/manifest.js";
import type { KvProfile } from "../engine/kv.js";

export interface MemoryShape {
  layers: number;
  kvHeads: number;
  window: number;
  blockSize: number;
}

/** A prompt's predicted scores: per layer [n][H]. */
export interface ScoredPrompt {
  n: number;
  scores: Float32Array[];
}

/** Per (layer, head), the scores of the pairs outside the window, sorted descending. */
function outsideWindow(p: ScoredPrompt, shape: MemoryShape): Float32Array[] {
  const old = Math.max(0, p.n - 1 - shape.window);
  const out: Float32Array[] = [];
  for (let l = 0; l < shape.layers; l++) {
    for (let h = 0; h < shape.kvHeads; h++) {
      const v = new Float32Array(old);
      for (let i = 0; i < old; i++) v[i] = p.scores[l][i * shape.kvHeads + h];
      v.sort().reverse();
      out.push(v);
    }
  }
  return out;
}

/** How many of `desc` (sorted descending) are ≥ τ. */
function countAtLeast(desc: Float32Array, tau: number): number {
  let lo = 0;
  let hi = desc.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (desc[mid] >= tau) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Pairs (block-rounded) kept and held by the full cache, summed over prompts, layers and heads, at each τ. */
export function keptAt(prompts: readonly ScoredPrompt[], shape: MemoryShape, taus: readonly number[]): { kept: number[]; full: number } {
  const kept = taus.map(() => 0);
  let full = 0;
  for (const p of prompts) {
    const inWindow = Math.min(p.n, shape.window + 1);
    full += p.n * shape.layers * shape.kvHeads;
    for (const desc of outsideWindow(p, shape)) {
      taus.forEach((tau, t) => {
        const entries = inWindow + countAtLeast(desc, tau);
        kept[t] += Math.ceil(entries / shape.blockSize) * shape.blockSize;
      });
    }
  }
  return { kept, full };
}

/** τ values spread over the scores that can be evicted: their quantiles, plus one below all and one above all. */
export function tauGrid(prompts: readonly ScoredPrompt[], shape: MemoryShape, points = 48): number[] {
  const all: number[] = [];
  for (const p of prompts) for (const v of outsideWindow(p, shape)) for (const s of v) all.push(s);
  if (all.length === 0) return [];
  all.sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 1e4) / 1e4;
  const taus = new Set<number>();
  taus.add(round(all[0] - 1));
  for (let i = 0; i <= points; i++) taus.add(round(all[Math.min(all.length - 1, Math.floor((i / points) * (all.length - 1)))]));
  taus.add(round(all[all.length - 1] + 1));
  return [...taus].filter(Number.isFinite).sort((a, b) => a - b);
}

/** The τ table: for each τ the kept fraction of the full cache's bytes and the compression (full / kept). */
export function buildTauTable(prompts: readonly ScoredPrompt[], shape: MemoryShape, taus = tauGrid(prompts, shape)): TauPoint[] {
  const { kept, full } = keptAt(prompts, shape, taus);
  return taus.map((tau, i) => {
    const keep = Math.min(1, kept[i] / full);
    return { tau, keep: round6(keep), compression: round6(1 / keep) };
  });
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

export interface SessionSettings {
  threads?: number;
  batchSize?: number;
}

async function kvzapSession(model: Model, profile: KvProfile, tau: number, window: number, contextSize: number, s: SessionSettings): Promise<Session> {
  return model.createSession({ contextSize, threads: s.threads, batchSize: s.batchSize, kv: { policy: "kvzap", profile, tau, window } });
}

/**
 * The surrogate's scores of every position of each prompt, read from a KVzap session that keeps everything
 * (τ = −1e9), so that they are the in-graph scores the memory would act on.
 */
export async function scorePrompts(
  model: Model,
  profile: KvProfile,
  prompts: readonly number[][],
  window: number,
  s: SessionSettings & { onProgress?: (done: number, total: number) => void; signal?: AbortSignal },
): Promise<ScoredPrompt[] | null> {
  const longest = Math.max(...prompts.map((p) => p.length));
  const session = await kvzapSession(model, profile, -1e9, window, longest + 1, s);
  const out: ScoredPrompt[] = [];
  try {
    for (const tokens of prompts) {
      session.clear();
      const r = await session.setPrompt(tokens, { signal: s.signal });
      if (r.aborted) return null;
      const scores = Array.from({ length: profile.layers.length }, (_, l) => session.kvScores(l, 0, tokens.length));
      out.push({ n: tokens.length, scores });
      s.onProgress?.(out.length, prompts.length);
    }
  } finally {
    session.dispose();
  }
  return out;
}

export interface MeasuredCompression {
  tau: number;
  compression: number;
  keep: number;
  bytesInUse: number;
  bytesFullEquivalent: number;
}

/**
 * What the KVzap memory really holds at τ after each prompt: the prompt goes in as usual, then its last token alone,
 * so that every pair but the window has met the rule (a prompt's last batch is otherwise all kept).
 */
export async function measureCompression(
  model: Model,
  profile: KvProfile,
  tau: number,
  window: number,
  prompts: readonly number[][],
  s: SessionSettings & { onProgress?: (done: number, total: number) => void; signal?: AbortSignal },
): Promise<MeasuredCompression | null> {
  const longest = Math.max(...prompts.map((p) => p.length));
  const session = await kvzapSession(model, profile, tau, window, longest + 1, s);
  let inUse = 0;
  let full = 0;
  try {
    for (let i = 0; i < prompts.length; i++) {
      const tokens = prompts[i];
      session.clear();
      if (tokens.length > 1) {
        const r = await session.setPrompt(tokens.slice(0, -1), { signal: s.signal });
        if (r.aborted) return null;
      }
      const r = await session.setPrompt(tokens, { signal: s.signal });
      if (r.aborted) return null;
      const st = session.kvStats();
      inUse += st.bytesInUse;
      full += st.bytesFullEquivalent;
      s.onProgress?.(i + 1, prompts.length);
    }
  } finally {
    session.dispose();
  }
  return { tau, compression: full / inUse, keep: inUse / full, bytesInUse: inUse, bytesFullEquivalent: full };
}
