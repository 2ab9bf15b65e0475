// The one default for a context's size, used by every command and by a session created without one.
import type { KvPolicyName } from "./kv.js";

/** For a GGUF that does not say what context it was trained for (n_ctx_train missing or 0). */
export const FALLBACK_CONTEXT_SIZE = 4096;

/**
 * llama.cpp's own cache allocates every position up front, so a full cache's default is capped to keep memory modest;
 * KVzap and the window hold only what they keep, under a memory budget, so they get the whole training context.
 */
export const FULL_CACHE_CONTEXT_CAP = 8192;

/** The context size when none was chosen: the model's training context, as llama.cpp reads it (n_ctx_train). */
export function defaultContextSize(trainedContext: number, policy: KvPolicyName = "kvzap"): number {
  const trained = trainedContext > 0 ? trainedContext : FALLBACK_CONTEXT_SIZE;
  return policy === "full" ? Math.min(trained, FULL_CACHE_CONTEXT_CAP) : trained;
}
