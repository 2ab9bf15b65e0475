// Benchmarks as plain functions: a loaded model and settings in, a report (what JSON is written) out.
import path from "node:path";
import type { Model } from "../engine/model.js";
import { measureMemory, type MemoryEvent, type MemoryMeasurement, type MemorySettings } from "../bench/memory.js";
import { benchProfile, profileInfo, type BenchProfile, type ProfileInfo } from "../bench/profile.js";
import { promptTokens, readBenchText } from "../bench/prompt.js";
import { measureSpeed, type SpeedEvent, type SpeedMeasurement, type SpeedSettings } from "../bench/speed.js";
import { deviceInfo, loadAverage, type DeviceInfo } from "../bench/system.js";
import { needsProfile, type Variant } from "../bench/variants.js";

export interface BenchModelInfo {
  path: string;
  description: string;
  parameters: number;
  layers: number;
  heads: number;
  kvHeads: number;
  embeddingSize: number;
  trainedContext: number;
}

export interface BenchCommon {
  model: Model;
  /** The text the prompt is cut from (default: Sherlock Holmes from the shared corpora). */
  textFile?: string;
  /** --profile; else the matching shipped or user profile; else random weights (speed only means something then). */
  profilePath?: string;
  cacheDir?: string;
}

export interface SpeedOptions extends BenchCommon, SpeedSettings {
  variants: Variant[];
  onEvent?: (e: SpeedEvent) => void;
}

export interface SpeedReport extends SpeedMeasurement {
  kind: "kvzap-bench-speed";
  created: string;
  model: BenchModelInfo;
  device: DeviceInfo;
  settings: SpeedSettings & { variants: string[]; profile: ProfileInfo | null; text: string; order: string; sampling: string };
}

export interface MemoryOptions extends BenchCommon, MemorySettings {
  taus: number[];
  onEvent?: (e: MemoryEvent) => void;
}

export interface MemoryReport extends MemoryMeasurement {
  kind: "kvzap-bench-memory";
  created: string;
  model: BenchModelInfo;
  device: DeviceInfo;
  settings: MemorySettings & { taus: number[]; profile: ProfileInfo; text: string };
}

export function benchModelInfo(model: Model): BenchModelInfo {
  const i = model.info;
  return {
    path: path.resolve(model.path),
    description: i.description,
    parameters: i.parameters,
    layers: i.layers,
    heads: i.heads,
    kvHeads: i.kvHeads,
    embeddingSize: i.embeddingSize,
    trainedContext: i.contextLength,
  };
}

export async function benchSpeed(o: SpeedOptions): Promise<SpeedReport> {
  const device = deviceInfo();
  const created = new Date().toISOString();
  const text = await readBenchText(o.textFile);
  const prompt = promptTokens(o.model, text.text, o.promptTokens);
  const profile: BenchProfile | null = needsProfile(o.variants) ? await benchProfile(o.model.path, { profilePath: o.profilePath, cacheDir: o.cacheDir }) : null;
  try {
    const settings: SpeedSettings = {
      contextSize: o.contextSize,
      promptTokens: o.promptTokens,
      decodeTokens: o.decodeTokens,
      reps: o.reps,
      threads: o.threads,
      batchSize: o.batchSize,
      warmup: o.warmup,
    };
    const m = await measureSpeed(o.model, prompt, o.variants, profile?.profile, settings, o.onEvent);
    device.loadAverage.after = loadAverage();
    return {
      kind: "kvzap-bench-speed",
      created,
      model: benchModelInfo(o.model),
      device,
      settings: {
        ...settings,
        variants: o.variants.map((v) => v.name),
        profile: profile ? profileInfo(profile) : null,
        text: text.path,
        order: "each repetition runs every variant once, in an order rotated by one per repetition; each run is a fresh session",
        sampling: "greedy",
      },
      ...m,
    };
  } finally {
    await profile?.cleanup();
  }
}

export async function benchMemory(o: MemoryOptions): Promise<MemoryReport> {
  const device = deviceInfo();
  const created = new Date().toISOString();
  const text = await readBenchText(o.textFile);
  const prompt = promptTokens(o.model, text.text, o.promptTokens);
  const profile = await benchProfile(o.model.path, { profilePath: o.profilePath, cacheDir: o.cacheDir });
  try {
    const settings: MemorySettings = {
      contextSize: o.contextSize,
      promptTokens: o.promptTokens,
      compareTokens: o.compareTokens,
      threads: o.threads,
      batchSize: o.batchSize,
      window: o.window,
    };
    const m = await measureMemory(o.model, prompt, o.taus, profile.profile, settings, o.onEvent);
    device.loadAverage.after = loadAverage();
    return {
      kind: "kvzap-bench-memory",
      created,
      model: benchModelInfo(o.model),
      device,
      settings: { ...settings, window: o.window ?? profile.profile.manifest.window, taus: [...o.taus], profile: profileInfo(profile), text: text.path },
      ...m,
    };
  } finally {
    await profile.cleanup();
  }
}
