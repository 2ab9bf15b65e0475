// The one default for a context's size, used by every command and by a session created without one.

/** For a GGUF that does not say what context it was trained for (n_ctx_train missing or 0). */
export const FALLBACK_CONTEXT_SIZE = 4096;

/** The context size when none was chosen: the model's training context, as llama.cpp reads it (n_ctx_train). */
export function defaultContextSize(trainedContext: number): number {
  return trainedContext > 0 ? trainedContext : FALLBACK_CONTEXT_SIZE;
}
