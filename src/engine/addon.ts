// The typed boundary to the native addon (native/build/Release/kvzap.node). Nothing outside src/engine imports it.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { projectRoot } from "../base/paths.js";

export interface NativeModelInfo {
  description: string;
  layers: number;
  heads: number;
  kvHeads: number;
  embeddingSize: number;
  contextLength: number;
  parameters: number;
  sizeBytes: number;
  vocabSize: number;
  bos: number;
  eos: number;
  addBos: boolean;
  recurrent: boolean;
  hasEncoder: boolean;
  chatTemplate: string | null;
}

export interface NativeModel {
  info(): NativeModelInfo;
  meta(): Record<string, string>;
  tokenize(text: string, addSpecial: boolean, parseSpecial: boolean): Int32Array;
  detokenize(tokens: Int32Array, removeSpecial: boolean, unparseSpecial: boolean): string;
  tokenPiece(token: number, special: boolean): Buffer;
  isEog(token: number): boolean;
  applyChatTemplate(messages: { role: string; content: string }[], addAssistant: boolean, template?: string): string | null;
  dispose(): void;
}

/** KV element types the addon takes (llama.cpp's cache and KVzap's attention both read them). */
export type KvElementType = "f16" | "f32" | "bf16" | "q8_0";

export interface NativeKvOptions {
  policy: "window" | "kvzap" | "random" | "scores";
  tau: number;
  window: number;
  sinks?: number;
  blockSize: number;
  budgetBytes: number;
  decodeEviction: boolean;
  reference: boolean;
  captureHidden: boolean;
  oracle?: boolean;
  typeK: KvElementType;
  typeV: KvElementType;
  surrogate?: { kind: "linear" | "mlp"; hidden: number; layers: { w1: Float32Array; b1: Float32Array; w2?: Float32Array; b2?: Float32Array }[] };
  /** random: kept fraction per head outside the window, and the hash seed. */
  keep?: number;
  seed?: number;
  /** scores: per layer [pos][KV head]. */
  scores?: Float32Array[];
}

export interface NativeKvStats {
  policy: "window" | "kvzap" | "random" | "scores";
  tau: number;
  tauEffective: number;
  window: number;
  blockSize: number;
  blockBytes: number;
  poolBlocks: number;
  blocksInUse: number;
  bytesInUse: number;
  bytesFullEquivalent: number;
  bytesFullAllocation: number;
  /** Physical memory the pool holds (committed chunks). */
  poolBytes: number;
  /** Address space reserved for the pool (a region per layer); costs no memory. */
  poolReservedBytes: number;
  /** The granularity in which the pool commits memory (its backend's chunk: 2 MiB on a GPU). */
  poolChunkBytes: number;
  /** The CUDA device whose memory (VRAM) holds the pool; null: host memory. */
  poolDevice: number | null;
  highWaterBlocks: number;
  contextSize: number;
  tokens: number;
  evicted: number;
  budgetEvicted: number;
  surrogateShare: number;
  /** Wall ms of the memory's host work since the session began or was cleared. */
  hostMs: number;
  layers: { entries: Int32Array; blocks: Int32Array }[];
}

export interface NativeContextOptions {
  contextSize: number;
  batchSize?: number;
  ubatchSize?: number;
  threads?: number;
  threadsBatch?: number;
  flashAttention?: boolean;
  typeK?: KvElementType;
  typeV?: KvElementType;
  kv?: NativeKvOptions;
}

/** How tokens are drawn from the logits. */
export interface SamplerSettings {
  /** 0 = greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
  repeatPenalty?: number;
  repeatLastN?: number;
}

export interface NativeSamplerOptions extends SamplerSettings {
  maxTokens: number;
}

export interface NativeMemoryStats {
  policy: string;
  bytesInUse: number;
  bytesFullEquivalent: number;
  bytesFullAllocation: number;
  poolBytes: number;
  poolReservedBytes?: number;
  computeBytes: number;
  modelBytes: number;
  tokens: number;
}

/** Where the oracle computes: "auto" is CUDA when the addon was built with it and a GPU is visible, else the CPU. */
export type OracleDevice = "auto" | "cpu" | "cuda";

export interface NativeContext {
  evaluate(
    tokens: Int32Array,
    onProgress?: (done: number) => void,
    allLogits?: boolean,
  ): Promise<{ tokens: number; ms: number; aborted: boolean; logits?: Float32Array }>;
  oracleScores(c0: number, c1: number, q0: number, q1: number, device?: OracleDevice): Promise<{ scores: Float32Array; device: "cpu" | "cuda" }>;
  oracleRows(layer: number, p0: number, p1: number): { q: Float32Array; k: Float32Array; v: Float32Array };
  generate(
    options: NativeSamplerOptions,
    onToken?: (token: number) => void,
  ): Promise<{ tokens: Int32Array; decoded: number; reason: "eog" | "maxTokens" | "abort" | "contextFull"; ms: number }>;
  abort(): void;
  logits(): Float32Array;
  /** Keeps the first `tokens`; returns how many it kept (0 when the memory could not continue from there and was cleared). */
  trim(tokens: number): number;
  clear(): void;
  memoryStats(): NativeMemoryStats;
  kvStats(): NativeKvStats | null;
  kvScores(layer: number, p0: number, p1: number): Float32Array;
  kvHidden(layer: number, p0: number, p1: number): Float32Array;
  setEvicting(evicting: boolean): void;
  saveState(): Buffer;
  loadState(state: Buffer): number;
  info(): { contextSize: number; batchSize: number; ubatchSize: number; threads: number; threadsBatch: number; tokens: number; graphsReused: number };
  dispose(): void;
}

/** Sizes and AdamW settings of one MLP training run: n pairs, D = d → m → h, the batches and the schedule. */
export interface MlpTrainingSettings {
  n: number;
  d: number;
  m: number;
  h: number;
  epochs: number;
  batch: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  clip: number;
}

/** One ggml device and the driver's memory figures for it. */
export interface NativeDevice {
  name: string;
  description: string;
  type: "cpu" | "gpu";
  freeBytes: number;
  totalBytes: number;
}

export interface NativeAddon {
  setVerbose(verbose: boolean): void;
  systemInfo(): {
    backend: "cpu" | "cuda";
    /** "stock": built against unpatched llama.cpp (the benchmark's stock engine, npm run build:stock). */
    engine: "kvzap" | "stock";
    llamaVersion: string;
    gpuOffload: boolean;
    mmap: boolean;
    system: string;
    devices: NativeDevice[];
    /** CUDA devices the calibration kernels (oracle, MLP training) can use: 0 in CPU builds. */
    cudaDevices: number;
  };
  /** The index-th GPU as systemInfo().devices lists it (the driver's free and total memory), without the rest. */
  gpuDevice(index: number): NativeDevice | undefined;
  /** Ridge regression of the linear surrogate (see src/calibrate/fit.ts), float64 on CPU threads. */
  ridgeFit(
    x: Float32Array,
    y: Float32Array,
    options: { n: number; d: number; h: number; lambdaScale: number; threads?: number },
  ): Promise<{ weight: Float32Array; bias: Float32Array; lambda: number }>;
  /** AdamW training of an MLP surrogate (see src/calibrate/fit.ts) on CPU threads or CUDA (rejects without a device). */
  trainMlp(
    x: Float32Array,
    y: Float32Array,
    theta: Float32Array,
    perm: Uint32Array,
    options: MlpTrainingSettings & { device: "cpu" | "cuda"; threads?: number },
  ): Promise<{ theta: Float32Array; epochLoss: Float64Array }>;
  ggmlTypes(): { id: number; name: string; typeSize: number; blockSize: number }[];
  Model: {
    /** Loads off the JS thread; abort() stops the load at the next tensor and the promise rejects ("aborted"). */
    load(
      path: string,
      options: { gpuLayers?: number; useMmap?: boolean },
      onProgress?: (fraction: number) => void,
    ): { promise: Promise<NativeModel>; abort(): void };
  };
  Context: new (model: NativeModel, options: NativeContextOptions) => NativeContext;
}

let cached: NativeAddon | undefined;

/** The project root: two levels above this file in both src/ (tests) and dist/ (the built CLI). */

export function addonPath(): string {
  return process.env.KVZAP_ADDON ? path.resolve(process.env.KVZAP_ADDON) : path.join(projectRoot, "native", "build", "Release", "kvzap.node");
}

export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const file = addonPath();
  if (!existsSync(file)) {
    throw new Error(`the kvzap native addon is not built (${file} is missing); run: npm run build:native`);
  }
  const require = createRequire(import.meta.url);
  cached = require(file) as NativeAddon;
  cached.setVerbose(process.env.KVZAP_VERBOSE === "1");
  return cached;
}
