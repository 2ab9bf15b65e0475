// KV cache policies of a session, as the engine passes them to the addon.
import type { KvElementType, NativeKvOptions } from "./addon.js";

export type { KvElementType };

/** One layer's surrogate weights, row-major ([out][in]). */
export type SurrogateLayer =
  { kind: "linear"; weight: Float32Array; bias: Float32Array } | { kind: "mlp"; w1: Float32Array; b1: Float32Array; w2: Float32Array; b2: Float32Array };

/**
 * What the engine needs of a KVzap profile: the surrogate and its default τ and window. src/profiles/ loads and
 * validates profiles; its Profile has this shape, and the engine knows nothing else about profiles.
 */
export interface KvProfile {
  manifest: { tau: number; window: number; surrogate: { kind: "linear" | "mlp"; hiddenDim?: number | null } };
  layers: readonly SurrogateLayer[];
}

export type KvPolicyName = "full" | "window" | "kvzap" | "random" | "scores";

export interface KvOptions {
  policy: KvPolicyName;
  /** kvzap: the surrogate weights and default τ and window. */
  profile?: KvProfile;
  /** kvzap: keep a pair leaving the window iff its score ≥ τ (default: the profile's). */
  tau?: number;
  /** Recent tokens always kept (default: the profile's, else 128). */
  window?: number;
  /** window policy: the first tokens always kept (StreamingLLM's attention sinks; default 4). */
  sinks?: number;
  /** KV pairs per block (default 16). */
  blockSize?: number;
  /** A hard cap on the pool: when it is full the lowest-scoring pairs outside the window go first. */
  budgetBytes?: number;
  /** Also evict generated tokens (default true). */
  decodeEviction?: boolean;
  /** Test-only: dense storage and stock attention with explicit per-head masks of the same rule. */
  reference?: boolean;
  /** Keep every layer's attn_norm rows (calibration and tests). */
  captureHidden?: boolean;
  /** Calibration: dense storage, nothing evicted, queries and attn_norm rows kept for KVzip+ oracle scores. */
  oracle?: boolean;
  /** random: the fraction of each head's pairs kept outside the window (exact per group of 64 positions). */
  keep?: number;
  /** random: the seed of the hash that picks the kept pairs (default 0). */
  seed?: number;
  /** scores: per layer, [position][KV head] scores used in place of the surrogate's (kept iff ≥ τ); positions past
   * the given ones are always kept. */
  scores?: Float32Array[];
}

export const DEFAULT_WINDOW = 128;
// Measured on the test-bed model at 3.9k tokens, its linear profile at its τ (2026-11-23, 2 CPU threads): blocks of
// 4/8/16/32/64 pairs give 3.667/3.659/3.642/3.609/3.564x compression with prefill and decode rates equal within the
// run-to-run noise; 16 wastes 0.7% against 4 and keeps rows of a block contiguous enough for GPU kernels.
export const DEFAULT_BLOCK_SIZE = 16;
// A ubatch's new pairs enter every head before any of them can leave the window, and the compute buffer grows with
// the ubatch: both bound what an evicting session holds at its peak. Measured on the test-bed model (2026-12-03, 2 CPU
// threads, kvzap at the shipped τ, 3.9k-token prompt): ubatches of 256 prefill as fast as 512 (1.50–1.52 s against
// 1.53–1.56 s) and peak RSS is lower (see README "Memory").
export const DEFAULT_EVICTING_UBATCH = 256;

/** The addon's options for a policy that drops pairs; `type` is the session's KV element type. */
export function toNativeKv(kv: KvOptions, type: KvElementType): NativeKvOptions | undefined {
  if (kv.policy === "full") return undefined;
  const out: NativeKvOptions = {
    policy: kv.policy,
    tau: kv.tau ?? kv.profile?.manifest.tau ?? 0,
    window: kv.window ?? kv.profile?.manifest.window ?? DEFAULT_WINDOW,
    blockSize: kv.blockSize ?? DEFAULT_BLOCK_SIZE,
    budgetBytes: kv.budgetBytes ?? 0,
    decodeEviction: kv.decodeEviction ?? true,
    reference: kv.reference ?? false,
    captureHidden: kv.captureHidden ?? false,
    oracle: kv.oracle ?? false,
    typeK: type,
    typeV: type,
  };
  if (kv.sinks !== undefined) out.sinks = kv.sinks;
  if (kv.policy === "random") {
    out.keep = kv.keep ?? 1;
    out.seed = kv.seed ?? 0;
  }
  if (kv.policy === "scores") out.scores = kv.scores ?? [];
  if (kv.profile) {
    out.surrogate = {
      kind: kv.profile.manifest.surrogate.kind,
      hidden: kv.profile.manifest.surrogate.hiddenDim ?? 0,
      layers: kv.profile.layers.map((l) => (l.kind === "linear" ? { w1: l.weight, b1: l.bias } : { w1: l.w1, b1: l.b1, w2: l.w2, b2: l.b2 })),
    };
  }
  return out;
}
