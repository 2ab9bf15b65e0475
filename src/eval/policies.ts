// The policies an evaluation compares, and how each is set to a compression: KVzap through τ (the profile's τ table,
// or a given τ), StreamingLLM through its window, random eviction through its kept fraction, the KVzip+ oracle
// through a τ over its scores on the prompt. Compression is counted in KV pairs: (tokens × layers × KV heads) / pairs
// held, so that policies compare at the same number of pairs whatever the block rounding.
import { UsageError } from "../base/errors.js";
import type { KvStats } from "../engine/session.js";

export const POLICY_NAMES = ["full", "kvzap", "window", "random", "oracle"] as const;
export type EvalPolicy = (typeof POLICY_NAMES)[number];

/** StreamingLLM's attention sinks (the engine's default for --kv window). */
export const SINKS = 4;

export function parsePolicies(list: string): EvalPolicy[] {
  const out: EvalPolicy[] = [];
  for (const raw of list
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    if (!(POLICY_NAMES as readonly string[]).includes(raw)) throw new UsageError(`unknown policy '${raw}'; the policies are ${POLICY_NAMES.join(", ")}`);
    out.push(raw as EvalPolicy);
  }
  if (out.length === 0) throw new UsageError("--policies is empty");
  return [...new Set(out)];
}

/** Pairs held per (layer, KV head) on average, and the compression in pairs. */
export function pairCompression(stats: KvStats): { pairsPerHead: number; compression: number; bytesCompression: number } {
  const layers = stats.layers ?? [];
  const heads = layers.reduce((a, l) => a + l.entries.length, 0);
  const pairs = layers.reduce((a, l) => a + l.entries.reduce((x, y) => x + y, 0), 0);
  const tokens = stats.tokens ?? 0;
  const pairsPerHead = heads > 0 ? pairs / heads : tokens;
  return {
    pairsPerHead,
    compression: pairsPerHead > 0 && tokens > 0 ? tokens / pairsPerHead : 1,
    bytesCompression: stats.bytesInUse > 0 ? stats.bytesFullEquivalent / stats.bytesInUse : 1,
  };
}

/** The StreamingLLM window that holds `pairsPerHead` pairs (sinks included). */
export function windowFor(pairsPerHead: number): number {
  return Math.max(1, Math.round(pairsPerHead) - SINKS);
}

/**
 * The kept fraction of random eviction that holds `pairsPerHead` pairs after `tokens` tokens with a recent window of
 * `window` (0 when even the window alone holds more).
 */
export function randomKeepFor(pairsPerHead: number, tokens: number, window: number): number {
  const outside = tokens - window;
  if (outside <= 0) return 1;
  return Math.min(1, Math.max(0, (pairsPerHead - window) / outside));
}

/**
 * The τ over given scores (per layer [pos][head], positions [0, decided)) that keeps `keepPairs` of the decided
 * pairs over all layers and heads: one threshold for the whole model, as KVzap's τ.
 */
export function tauForKeptPairs(scores: readonly Float32Array[], decided: number, heads: number, keepPairs: number): number {
  const all: number[] = [];
  for (const s of scores) for (let i = 0; i < Math.min(s.length, decided * heads); i++) all.push(s[i]);
  if (keepPairs <= 0 || all.length === 0) return Infinity;
  if (keepPairs >= all.length) return -Infinity;
  all.sort((a, b) => b - a);
  const k = Math.round(keepPairs);
  // keep the k highest: τ is the k-th highest (ties may keep a few more)
  return all[Math.max(0, k - 1)];
}

/** "1.5,2,3x" → [1.5, 2, 3]. */
export function parseTargets(list: string, name = "targets"): number[] {
  const out = list
    .split(",")
    .map((s) => s.trim().replace(/x$/i, ""))
    .filter(Boolean)
    .map(Number);
  if (out.length === 0 || out.some((c) => !Number.isFinite(c) || c < 1 || c > 1000)) {
    throw new UsageError(`--${name} must be compressions ≥ 1, like 1.5,2,3,4,6 (got '${list}')`);
  }
  return out;
}
