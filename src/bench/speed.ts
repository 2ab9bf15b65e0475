// `kvzap bench speed`: prefill and decode rates of several KV configurations on one prompt, interleaved.
import type { Model } from "../engine/model.js";
import type { Session, StopReason } from "../engine/session.js";
import type { Profile } from "../profiles/profile.js";
import { pairRatios, rotation, round, summarize, type Summary } from "./stats.js";
import { variantSession, type Variant } from "./variants.js";

export interface SpeedSettings {
  contextSize: number;
  promptTokens: number;
  decodeTokens: number;
  reps: number;
  threads: number;
  batchSize: number;
  /** Each variant runs once on a short prompt before the timed repetitions (page faults, first allocations). */
  warmup: boolean;
}

/** One timed run: a fresh session, the prompt, then greedy decoding. */
export interface SpeedRun {
  rep: number;
  /** Position of this variant within its repetition (the order rotates each repetition). */
  slot: number;
  promptTokens: number;
  prefillMs: number;
  prefillTokPerSec: number;
  /**
   * Tokens decoded into the cache after the prompt: the asked number, or one fewer when the prompt leaves room for
   * no more (the last sampled token is never decoded), or fewer when greedy decoding reached an end-of-generation
   * token (stopReason "eog"; the rate then covers fewer, earlier steps).
   */
  decodedTokens: number;
  stopReason: StopReason;
  decodeMs: number;
  decodeTokPerSec: number;
  kvBytesInUse: number;
  kvBytesFullEquivalent: number;
  evicted: number;
}

export interface SpeedResult {
  variant: string;
  policy: "full" | "kvzap" | "window";
  tau?: number;
  window?: number;
  /** Stock only: the flash-attention setting asked for; "default" leaves it to llama.cpp (auto). */
  flashAttention?: "default" | "on" | "off";
  prefillTokPerSec: Summary;
  decodeTokPerSec: Summary;
  /** After the last repetition's decoding. The full cache reports its whole buffer, allocated for the context. */
  kvBytesInUse: number;
  kvBytesFullEquivalent: number;
  runs: SpeedRun[];
}

export interface RatioSummary {
  prefill: Summary;
  decode: Summary;
}

export type SpeedEvent = { type: "warmup"; variant: string } | { type: "run"; variant: string; run: SpeedRun; of: { rep: number; reps: number } };

export interface SpeedMeasurement {
  results: SpeedResult[];
  /** The baseline the ratios divide by ("stock" when measured, else the first stock variant), or null. */
  baseline: string | null;
  /** kvzap (τ = -1e9) / baseline, repetition by repetition; null when either was not measured. */
  ratios: RatioSummary | null;
  /** Every other variant / baseline, repetition by repetition. */
  ratiosVsBaseline: Record<string, RatioSummary>;
}

const WARMUP_PROMPT = 128;
const WARMUP_DECODE = 4;

export async function measureSpeed(
  model: Model,
  prompt: readonly number[],
  variants: readonly Variant[],
  profile: Profile | undefined,
  settings: SpeedSettings,
  onEvent: (e: SpeedEvent) => void = () => {},
): Promise<SpeedMeasurement> {
  if (settings.warmup) {
    for (const v of variants) {
      onEvent({ type: "warmup", variant: v.name });
      await timedRun(model, prompt.slice(0, Math.min(WARMUP_PROMPT, prompt.length)), v, profile, settings, WARMUP_DECODE);
    }
  }
  const runs = new Map<string, SpeedRun[]>(variants.map((v) => [v.name, []]));
  for (let rep = 0; rep < settings.reps; rep++) {
    const order = rotation(variants, rep);
    for (let slot = 0; slot < order.length; slot++) {
      const v = order[slot];
      const m = await timedRun(model, prompt, v, profile, settings, settings.decodeTokens);
      const run: SpeedRun = { rep, slot, ...m };
      runs.get(v.name)!.push(run);
      onEvent({ type: "run", variant: v.name, run, of: { rep, reps: settings.reps } });
    }
  }
  const results = variants.map((v) => resultOf(v, runs.get(v.name)!, profile));
  const baseline = results.find((r) => r.variant === "stock") ?? results.find((r) => r.policy === "full") ?? null;
  const ratiosVsBaseline: Record<string, RatioSummary> = {};
  if (baseline) {
    for (const r of results) if (r !== baseline) ratiosVsBaseline[r.variant] = ratioSummary(r, baseline);
  }
  const kvzap = results.find((r) => r.variant === "kvzap");
  return {
    results,
    baseline: baseline?.variant ?? null,
    ratios: kvzap && baseline ? ratiosVsBaseline[kvzap.variant] : null,
    ratiosVsBaseline,
  };
}

/** a / b repetition by repetition (the two runs of a repetition ran back to back), from each run's own rates. */
function ratioSummary(a: SpeedResult, b: SpeedResult): RatioSummary {
  const ratio = (key: "prefillTokPerSec" | "decodeTokPerSec") =>
    roundSummary(
      summarize(
        pairRatios(
          a.runs.map((r) => r[key]),
          b.runs.map((r) => r[key]),
        ),
      ),
    );
  return { prefill: ratio("prefillTokPerSec"), decode: ratio("decodeTokPerSec") };
}

function roundSummary(s: Summary): Summary {
  return { median: round(s.median), min: round(s.min), max: round(s.max), all: s.all.map((x) => round(x)) };
}

function resultOf(v: Variant, runs: SpeedRun[], profile: Profile | undefined): SpeedResult {
  const last = runs[runs.length - 1];
  const base = {
    variant: v.name,
    prefillTokPerSec: roundSummary(summarize(runs.map((r) => r.prefillTokPerSec))),
    decodeTokPerSec: roundSummary(summarize(runs.map((r) => r.decodeTokPerSec))),
    kvBytesInUse: last?.kvBytesInUse ?? 0,
    kvBytesFullEquivalent: last?.kvBytesFullEquivalent ?? 0,
    runs,
  };
  switch (v.kind) {
    case "stock":
      return { ...base, policy: "full", flashAttention: v.flashAttention === undefined ? "default" : v.flashAttention ? "on" : "off" };
    case "kvzap":
      return { ...base, policy: "kvzap", tau: v.tau, window: profile?.manifest.window };
    case "window":
      return { ...base, policy: "window", window: v.window ?? profile?.manifest.window ?? 128 };
  }
}

/** A fresh session: the prompt (timed as prefill), then `decodeTokens` greedy tokens (timed as decode). */
async function timedRun(
  model: Model,
  prompt: readonly number[],
  v: Variant,
  profile: Profile | undefined,
  settings: SpeedSettings,
  decodeTokens: number,
): Promise<Omit<SpeedRun, "rep" | "slot">> {
  const { kv, flashAttention } = variantSession(v, profile);
  const session = await model.createSession({
    contextSize: settings.contextSize,
    batchSize: settings.batchSize,
    threads: settings.threads,
    flashAttention,
    kv,
  });
  try {
    const r = await session.generate(prompt, { maxTokens: decodeTokens + 1, temperature: 0 });
    const prefillMs = r.stats.promptMs;
    const evaluated = r.stats.promptTokens - r.stats.reusedTokens;
    const decodeMs = r.stats.decodeMs;
    const decoded = decodedBy(r);
    const kv = session.kvStats();
    return {
      promptTokens: evaluated,
      prefillMs: round(prefillMs, 6),
      prefillTokPerSec: prefillMs > 0 ? round((evaluated * 1000) / prefillMs, 7) : 0,
      decodedTokens: decoded,
      stopReason: r.stopReason,
      decodeMs: round(decodeMs, 6),
      decodeTokPerSec: decodeMs > 0 ? round((decoded * 1000) / decodeMs, 7) : 0,
      kvBytesInUse: kv.bytesInUse,
      kvBytesFullEquivalent: kv.bytesFullEquivalent,
      evicted: kv.evicted ?? 0,
    };
  } finally {
    session.dispose();
  }
}

/** Tokens of a generate call that were decoded into memory: all but the last sampled, which only ends the call. */
function decodedBy(r: Awaited<ReturnType<Session["generate"]>>): number {
  // An end-of-generation token is not in r.tokens, and was not decoded either.
  return r.stopReason === "eog" ? r.tokens.length : Math.max(0, r.tokens.length - 1);
}
