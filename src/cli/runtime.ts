// What every model-running command resolves the same way: the model (flag, positional, env, config), context size,
// threads, GPU layers and cache folder, with flag > environment > config file > default.
import { defaultContextSize } from "../engine/context-size.js";
import { readModelSummary } from "../engine/gguf.js";
import { Model } from "../engine/model.js";
import type { SessionOptions } from "../engine/session.js";
import { requireModel, resolveSetting } from "../settings/resolve.js";
import { intFlag } from "./args.js";
import { UsageError } from "../base/errors.js";
import { checkKvFlags, resolveKv, type KvFlags } from "./kv-args.js";
import { resolveModelArg } from "./model-arg.js";

export interface RuntimeFlags extends KvFlags {
  model?: string;
  ctx?: string;
  "gpu-layers"?: string;
  threads?: string;
  "cache-dir"?: string;
  batch?: string;
}

export interface Runtime {
  modelSpec: string;
  gpuLayers: number;
  session: SessionOptions;
  /** True when the context size came from a flag, the environment or the config file. */
  contextSizeChosen: boolean;
}

export function resolveRuntime(flags: RuntimeFlags, positionalModel?: string): Runtime {
  if (positionalModel !== undefined && flags.model !== undefined) throw new UsageError("give the model once: as MODEL or as --model");
  const modelSpec = requireModel(positionalModel ?? flags.model);
  checkKvFlags(flags);
  const ctx = resolveSetting("contextSize", flags.ctx);
  const threads = resolveSetting("threads", flags.threads).value;
  return {
    modelSpec,
    gpuLayers: resolveSetting("gpuLayers", flags["gpu-layers"]).value,
    session: {
      contextSize: ctx.value,
      threads,
      batchSize: intFlag(flags.batch, "batch", 1, 1 << 20),
    },
    contextSizeChosen: ctx.source !== "default",
  };
}

/**
 * Resolves (downloading if needed) and loads the model of `runtime`, and settles the session's context size and KV
 * policy first, from the GGUF header (a profile that does not fit the model, or a KV policy the model cannot run,
 * fails here, before the weights are loaded).
 */
export async function loadRuntimeModel(runtime: Runtime, flags: RuntimeFlags, onProgress?: (f: number) => void, signal?: AbortSignal): Promise<Model> {
  const file = await resolveModelArg(runtime.modelSpec, flags["cache-dir"]);
  const summary = await readModelSummary(file);
  const contextSize = runtime.session.contextSize ?? defaultContextSize(summary.contextLength);
  const kvType = flags["kv-type"] === "q8_0" ? "q8_0" : "f16";
  runtime.session.kvType = kvType;
  runtime.session.kv = await resolveKv(flags, file, { contextSize, fullBytesPerToken: summary.kvBytesPerToken[kvType] }, flags["cache-dir"]);
  runtime.session.contextSize ??= defaultContextSize(summary.contextLength, runtime.session.kv.policy);
  return Model.load(file, { gpuLayers: runtime.gpuLayers, onProgress, signal });
}
