export { Model, defaultThreads, type ChatMessage, type LoadModelOptions } from "./model.js";
export {
  Session,
  PromptTooLongError,
  type GenerateOptions,
  type GenerationResult,
  type GenerationStats,
  type KvStats,
  type SamplingOptions,
  type SessionOptions,
  type StopReason,
} from "./session.js";
export { readModelSummary, checkGgufFile, type ModelSummary } from "./gguf.js";
export { loadAddon } from "./addon.js";
