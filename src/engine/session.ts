// A session: one context with its KV memory, prompt evaluation and streamed generation.
import { UserError } from "../base/errors.js";
import { loadAddon, type NativeContext, type NativeKvStats, type NativeModel, type OracleDevice, type SamplerSettings } from "./addon.js";
import { gpuMemory, type GpuMemory } from "./compute.js";
import { defaultContextSize } from "./context-size.js";
import { DEFAULT_EVICTING_UBATCH, toNativeKv, type KvElementType, type KvOptions } from "./kv.js";
import type { Model } from "./model.js";
import { TokenTextStream } from "./text-stream.js";

export interface SessionOptions {
  /** The most positions the session may hold. Default: the model's training context. */
  contextSize?: number;
  batchSize?: number;
  ubatchSize?: number;
  threads?: number;
  threadsBatch?: number;
  flashAttention?: boolean;
  /** KV cache policy (default: the full cache). */
  kv?: KvOptions;
  /** KV element type, whatever the policy: "f16" (default), "f32" or "bf16". */
  kvType?: KvElementType;
}

/** The sampler settings a generation takes (the repetition window keeps the addon's default of 64 tokens). */
export type SamplingOptions = Omit<SamplerSettings, "repeatLastN">;

export interface GenerateOptions extends SamplingOptions {
  maxTokens?: number;
  /** Generation ends before the first occurrence of any of these strings; it is not part of the text. */
  stop?: string[];
  signal?: AbortSignal;
  /** Streamed text, in order; concatenated it equals the result's text. */
  onText?: (text: string) => void;
  onPromptProgress?: (done: number, total: number) => void;
}

export type StopReason = "eog" | "maxTokens" | "stop" | "abort" | "contextFull";

export interface KvLayerStats {
  bytesInUse: number;
  bytesFullEquivalent: number;
  /** KV pairs held by each KV head. */
  entries: number[];
  /** Blocks in use by each KV head. */
  blocks: number[];
}

export interface KvStats {
  policy: string;
  /** Bytes of the blocks in use (full cache: the KV buffer). */
  bytesInUse: number;
  /** What a full cache holds for the same tokens (full cache: the KV buffer). */
  bytesFullEquivalent: number;
  /** What a full cache of the session's context size allocates (full cache: the KV buffer). */
  bytesFullAllocation: number;
  /** Physical memory the KV storage really holds now: the pool's committed chunks (full cache: the KV buffer). */
  poolBytes: number;
  /** Address space reserved for the pool (a region per layer, each able to hold up to the budget or the layer's full cache); reserving costs no memory. */
  poolReservedBytes?: number;
  /** kvzap: the granularity in which the pool commits memory (its backend's chunk: 2 MiB on a GPU, 64 KiB in host memory). */
  poolChunkBytes?: number;
  /** kvzap: the CUDA device whose memory (VRAM) holds the pool; null: host memory. */
  poolDevice?: number | null;
  /** The GPU the KV lives on, as its driver reports it now (the whole device, every process). */
  gpu?: GpuMemory;
  /** Present when KV pairs can be dropped (window, kvzap). */
  tau?: number;
  /** τ as a budget raised it (equals tau until the pool runs full). */
  tauEffective?: number;
  window?: number;
  blockSize?: number;
  tokens?: number;
  evicted?: number;
  budgetEvicted?: number;
  /** Surrogate multiply-adds per token over the layers' own. */
  surrogateShare?: number;
  /** kvzap: wall milliseconds the KV memory's own host work took since the session began or was cleared (batch checks, keep/drop decisions, block moves, the block table's sync, the graph's inputs). */
  hostMs?: number;
  layers?: KvLayerStats[];
}

export interface GenerationStats {
  promptTokens: number;
  /** Prompt tokens served from the session's memory instead of being evaluated again. */
  reusedTokens: number;
  generatedTokens: number;
  promptMs: number;
  decodeMs: number;
  promptTokensPerSecond: number;
  decodeTokensPerSecond: number;
  kv: KvStats;
}

export interface GenerationResult {
  text: string;
  tokens: number[];
  stopReason: StopReason;
  stats: GenerationStats;
}

export class PromptTooLongError extends UserError {
  constructor(
    readonly promptTokens: number,
    readonly contextSize: number,
    readonly trainedContext: number,
  ) {
    const need = promptTokens + 1;
    const fit = Math.pow(2, Math.ceil(Math.log2(need + 64)));
    const hint =
      need > trainedContext
        ? `; the model was trained for ${trainedContext} tokens, so shorten the input`
        : `; run with --ctx ${Math.min(fit, trainedContext)} or more`;
    super(`the prompt is ${promptTokens} tokens but the context holds ${contextSize}${hint}`);
  }
}

/** The context size llama.cpp rounds every request up to a multiple of. */
export const CONTEXT_ROUNDING = 256;

export function contextNotes(requested: number, actual: number, trained: number, modelPath: string): string[] {
  const notes: string[] = [];
  if (actual !== requested)
    notes.push(`the context size ${requested} was rounded up to ${actual} (llama.cpp sizes contexts in multiples of ${CONTEXT_ROUNDING})`);
  if (trained > 0 && actual > trained) {
    const name = modelPath.split(/[\\/]/).pop() ?? modelPath;
    notes.push(`the context (${actual} tokens) is larger than the ${trained} tokens ${name} was trained for: expect weaker answers past ${trained} tokens`);
  }
  return notes;
}

export class Session {
  readonly model: Model;
  readonly contextSize: number;
  private native: NativeContext | null;
  /** Mirror of the token ids held in memory, in order. */
  private memory: number[] = [];
  private disposeHooks: (() => void)[] = [];
  private busy = false;
  /** Whether the context's logits are those after the last token in memory. */
  private logitsFresh = false;
  readonly kv: KvOptions;

  constructor(model: Model, nativeModel: NativeModel, options: SessionOptions) {
    this.model = model;
    const contextSize = options.contextSize ?? defaultContextSize(model.info.contextLength, options.kv?.policy ?? "full");
    if (!Number.isInteger(contextSize) || contextSize < 1) throw new UserError(`the context size must be a positive whole number, got ${contextSize}`);
    const batchSize = Math.min(options.batchSize ?? 512, contextSize);
    const addon = loadAddon();
    this.kv = options.kv ?? { policy: "full" };
    const kvType = options.kvType ?? "f16";
    try {
      this.native = new addon.Context(nativeModel, {
        kv: toNativeKv(this.kv, kvType),
        typeK: kvType,
        typeV: kvType,
        contextSize,
        batchSize,
        ubatchSize: Math.min(options.ubatchSize ?? (this.kv.policy === "full" ? batchSize : DEFAULT_EVICTING_UBATCH), batchSize),
        threads: options.threads,
        threadsBatch: options.threadsBatch ?? options.threads,
        flashAttention: options.flashAttention,
      });
    } catch (e) {
      throw new UserError(`could not create a context of ${contextSize} tokens: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.contextSize = this.native.info().contextSize;
    this.notes = contextNotes(contextSize, this.contextSize, model.info.contextLength, model.path);
  }

  /** What a person should know about the context they asked for: it was rounded, or it exceeds the training. */
  readonly notes: readonly string[];

  private get handle(): NativeContext {
    if (!this.native) throw new Error("the session has been disposed");
    return this.native;
  }

  /** Token ids held in memory. */
  get tokens(): readonly number[] {
    return this.memory;
  }

  get info() {
    return this.handle.info();
  }

  kvStats(): KvStats {
    const native = this.handle;
    const z = native.kvStats();
    if (!z) {
      const s = native.memoryStats();
      const gpu = this.model.gpuLayers !== 0 ? gpuMemory(0) : undefined;
      return {
        policy: s.policy,
        bytesInUse: s.bytesInUse,
        bytesFullEquivalent: s.bytesFullEquivalent,
        bytesFullAllocation: s.bytesFullAllocation,
        poolBytes: s.poolBytes,
        ...(gpu ? { gpu } : {}),
      };
    }
    const stats = kvStatsFrom(z);
    const gpu = z.poolDevice !== null ? gpuMemory(z.poolDevice) : undefined;
    return gpu ? { ...stats, gpu } : stats;
  }

  /** kvzap: the surrogate's scores of layer `layer` for positions [p0, p1), row-major [position][KV head]. */
  kvScores(layer: number, p0: number, p1: number): Float32Array {
    return this.handle.kvScores(layer, p0, p1);
  }

  /** With kv.captureHidden: layer `layer`'s attn_norm rows for positions [p0, p1), row-major [position][n_embd]. */
  kvHidden(layer: number, p0: number, p1: number): Float32Array {
    return this.handle.kvHidden(layer, p0, p1);
  }

  /** The logits after the last evaluated token (for tests and evaluation). */
  logits(): Float32Array {
    return this.handle.logits();
  }

  /**
   * Makes memory hold exactly `tokens`: keeps the longest common prefix of what it holds, evaluates the rest.
   * Returns how many tokens were reused.
   */
  async setPrompt(
    tokens: readonly number[],
    options: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {},
  ): Promise<{ reused: number; evaluated: number; ms: number; aborted: boolean }> {
    if (tokens.length === 0) throw new UserError("the prompt is empty");
    if (tokens.length >= this.contextSize) {
      throw new PromptTooLongError(tokens.length, this.contextSize, this.model.info.contextLength);
    }
    return this.exclusive(async () => {
      const native = this.handle;
      let common = 0;
      while (common < this.memory.length && common < tokens.length && this.memory[common] === tokens[common]) common++;
      if (common === tokens.length && common === this.memory.length && this.logitsFresh) return { reused: common, evaluated: 0, ms: 0, aborted: false };
      // Otherwise the last prompt token is evaluated again, so that its logits are fresh.
      if (common === tokens.length) common--;
      if (common < this.memory.length) {
        // KVzap cannot always continue from `common` as a fresh session would (pairs the next query must see may be
        // gone already); it then starts over and everything is evaluated again.
        common = native.trim(common);
        this.memory.length = common;
        this.logitsFresh = false;
      }
      const rest = tokens.slice(common);
      const onAbort = () => native.abort();
      options.signal?.addEventListener("abort", onAbort);
      try {
        if (options.signal?.aborted) return { reused: common, evaluated: 0, ms: 0, aborted: true };
        this.logitsFresh = false;
        const r = await native.evaluate(Int32Array.from(rest), (done) => options.onProgress?.(common + done, tokens.length));
        append(this.memory, rest, r.tokens);
        this.logitsFresh = r.tokens === rest.length;
        return { reused: common, evaluated: r.tokens, ms: r.ms, aborted: r.aborted };
      } finally {
        options.signal?.removeEventListener("abort", onAbort);
      }
    });
  }

  /** Evaluates `prompt` (reusing what memory already holds) and generates a continuation. */
  async generate(prompt: readonly number[], options: GenerateOptions = {}): Promise<GenerationResult> {
    const maxTokens = options.maxTokens ?? 256;
    const evaluated = await this.setPrompt(prompt, { signal: options.signal, onProgress: options.onPromptProgress });
    const promptStats = { promptTokens: prompt.length, reusedTokens: evaluated.reused, promptMs: evaluated.ms, evaluated: evaluated.evaluated };
    if (evaluated.aborted) return this.result("", [], "abort", promptStats, 0);
    const room = this.contextSize - this.memory.length;
    const limit = Math.max(1, Math.min(maxTokens, room));
    return this.exclusive(async () => {
      const native = this.handle;
      const stream = new TokenTextStream(this.model, options.stop ?? []);
      const accepted: number[] = [];
      let stopped = false;
      const onAbort = () => native.abort();
      options.signal?.addEventListener("abort", onAbort);
      let r;
      const protectGenerated = this.kv.policy !== "full" && this.kv.decodeEviction === false;
      if (protectGenerated) native.setEvicting(false);
      try {
        if (options.signal?.aborted) return this.result("", [], "abort", promptStats, 0);
        r = await native.generate(
          {
            maxTokens: limit,
            temperature: options.temperature ?? 0.8,
            topK: options.topK ?? 40,
            topP: options.topP ?? 0.95,
            minP: options.minP ?? 0.05,
            seed: options.seed ?? Math.floor(Math.random() * 0xffffffff),
            repeatPenalty: options.repeatPenalty ?? 1.0,
          },
          (token) => {
            if (stopped) return;
            if (this.model.isEndOfGeneration(token)) return;
            accepted.push(token);
            const out = stream.push(token);
            if (out.text) options.onText?.(out.text);
            if (out.stopped) {
              stopped = true;
              native.abort();
            }
          },
        );
      } finally {
        options.signal?.removeEventListener("abort", onAbort);
        if (protectGenerated && this.native) native.setEvicting(true);
      }
      // Memory holds every sampled token that was decoded; keep the mirror exact and drop what followed a stop string.
      // The logits are those after the last decoded token, unless a decode failed or the tail is trimmed.
      const held = native.info().tokens;
      this.logitsFresh = r.decoded === Math.max(0, held - this.memory.length) && (r.decoded > 0 || this.logitsFresh);
      append(this.memory, r.tokens, held - this.memory.length);
      if (stopped && this.memory.length > prompt.length + accepted.length) {
        this.memory.length = native.trim(prompt.length + accepted.length);
        this.logitsFresh = false;
      }
      if (!stopped) {
        const tail = stream.flush();
        if (tail) options.onText?.(tail);
      }
      let reason: StopReason = stopped ? "stop" : r.reason;
      if (reason === "maxTokens" && limit < maxTokens) reason = "contextFull";
      return this.result(stream.text, accepted, reason, promptStats, r.ms);
    });
  }

  private result(
    text: string,
    tokens: number[],
    stopReason: StopReason,
    p: { promptTokens: number; reusedTokens: number; promptMs: number; evaluated: number },
    decodeMs: number,
  ): GenerationResult {
    return {
      text,
      tokens,
      stopReason,
      stats: {
        promptTokens: p.promptTokens,
        reusedTokens: p.reusedTokens,
        generatedTokens: tokens.length,
        promptMs: p.promptMs,
        decodeMs,
        promptTokensPerSecond: p.promptMs > 0 ? (p.evaluated * 1000) / p.promptMs : 0,
        decodeTokensPerSecond: decodeMs > 0 ? (tokens.length * 1000) / decodeMs : 0,
        kv: this.native ? this.kvStats() : { policy: "full", bytesInUse: 0, bytesFullEquivalent: 0, bytesFullAllocation: 0, poolBytes: 0 },
      },
    };
  }

  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.busy) throw new Error("the session is busy: wait for the running evaluation to finish");
    this.busy = true;
    try {
      return await fn();
    } finally {
      this.busy = false;
    }
  }

  /**
   * KVzip+ oracle scores s⁺ (not log) of context positions [c0, c1) over the queries [q0, q1), both already in memory,
   * row-major [layer][position - c0][KV head], and the device that computed them. Needs kv.oracle.
   */
  async oracleScores(
    context: [number, number],
    queries: [number, number],
    device: OracleDevice = "auto",
  ): Promise<{ scores: Float32Array; device: "cpu" | "cuda" }> {
    return this.exclusive(() => this.handle.oracleScores(context[0], context[1], queries[0], queries[1], device));
  }

  /** Oracle sessions (tests): layer `layer`'s post-RoPE queries [pos][n_head·dk] and dense K, V [KV head][pos][d]. */
  oracleRows(layer: number, p0: number, p1: number): { q: Float32Array; k: Float32Array; v: Float32Array } {
    return this.handle.oracleRows(layer, p0, p1);
  }

  /** Evaluates `tokens` after what memory holds and returns the logits of every one of them, [n][vocab]. */
  async evaluateAll(tokens: readonly number[]): Promise<Float32Array> {
    if (this.memory.length + tokens.length >= this.contextSize) {
      throw new PromptTooLongError(this.memory.length + tokens.length, this.contextSize, this.model.info.contextLength);
    }
    return this.exclusive(async () => {
      this.logitsFresh = false;
      const r = await this.handle.evaluate(Int32Array.from(tokens), undefined, true);
      append(this.memory, tokens, r.tokens);
      this.logitsFresh = r.tokens === tokens.length && tokens.length > 0;
      return r.logits ?? new Float32Array(0);
    });
  }

  /** The memory as bytes (with the token ids it holds), for loadState. */
  saveState(): { state: Buffer; tokens: number[] } {
    return { state: this.handle.saveState(), tokens: [...this.memory] };
  }

  loadState(saved: { state: Buffer; tokens: number[] }): void {
    const held = this.handle.loadState(saved.state);
    if (held !== saved.tokens.length) throw new Error(`the state holds ${held} tokens, its token list ${saved.tokens.length}`);
    this.memory = [...saved.tokens];
    this.logitsFresh = false;
  }

  /** Drops everything in memory. */
  clear(): void {
    this.handle.clear();
    this.memory = [];
    this.logitsFresh = false;
  }

  onDispose(hook: () => void): void {
    this.disposeHooks.push(hook);
  }

  /** Frees the context's memory now (after the running evaluation stops, if one runs). */
  dispose(): void {
    if (!this.native) return;
    this.native.dispose();
    this.native = null;
    for (const h of this.disposeHooks) h();
    this.disposeHooks = [];
  }
}

function kvStatsFrom(z: NativeKvStats): KvStats {
  const rowBytes = z.blockBytes / z.blockSize;
  return {
    policy: z.policy,
    bytesInUse: z.bytesInUse,
    bytesFullEquivalent: z.bytesFullEquivalent,
    tau: z.tau,
    tauEffective: z.tauEffective,
    window: z.window,
    blockSize: z.blockSize,
    bytesFullAllocation: z.bytesFullAllocation,
    poolBytes: z.poolBytes,
    poolReservedBytes: z.poolReservedBytes,
    poolChunkBytes: z.poolChunkBytes,
    poolDevice: z.poolDevice,
    tokens: z.tokens,
    evicted: z.evicted,
    budgetEvicted: z.budgetEvicted,
    surrogateShare: z.surrogateShare,
    hostMs: z.hostMs,
    layers: z.layers.map((l) => {
      const blocks = Array.from(l.blocks);
      const entries = Array.from(l.entries);
      return {
        bytesInUse: blocks.reduce((a, b) => a + b, 0) * z.blockBytes,
        bytesFullEquivalent: z.tokens * entries.length * rowBytes,
        entries,
        blocks,
      };
    }),
  };
}

/** Appends the first `count` of `from` to `to` (a spread argument list overflows the stack past ~100k tokens). */
function append(to: number[], from: ArrayLike<number>, count: number): void {
  const n = Math.min(count, from.length);
  for (let i = 0; i < n; i++) to.push(from[i]!);
}
