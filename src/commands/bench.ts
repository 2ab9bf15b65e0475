// Benchmarks as plain functions: a loaded model and settings in, a report (what JSON is written) out.
import type { Model } from "../engine/model.js";
import { measureMemory, type MemoryEvent, type MemorySettings } from "../bench/memory.js";
import { benchProfile, profileInfo, type BenchProfile } from "../bench/profile.js";
import { promptTokens, readBenchText } from "../bench/prompt.js";
import { measureSpeed, type SpeedEvent, type SpeedSettings } from "../bench/speed.js";
import { benchModelInfo, type MemoryReport, type SpeedReport } from "../bench/report.js";
import { deviceInfo, loadAverage } from "../bench/system.js";
import { needsProfile, type Variant } from "../bench/variants.js";

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

export interface MemoryOptions extends BenchCommon, MemorySettings {
  taus: number[];
  onEvent?: (e: MemoryEvent) => void;
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
