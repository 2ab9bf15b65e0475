// One policy set to one compression on one prompt: the session's KV options and the parameter that was chosen.
import type { KvOptions } from "../engine/kv.js";
import { DEFAULT_WINDOW } from "../engine/kv.js";
import type { Profile } from "../profiles/profile.js";
import { tauForTarget } from "../profiles/tau.js";
import { randomKeepFor, tauForKeptPairs, windowFor, type EvalPolicy } from "./policies.js";

export interface PolicySetting {
  policy: EvalPolicy;
  /** The compression asked for (null: the full cache, or a τ of the grid). */
  target: number | null;
  kv: KvOptions;
  /** What was chosen to reach it: τ, window or kept fraction. */
  param: { tau?: number; window?: number; keep?: number };
}

export interface MatchContext {
  /** Tokens held at the end of the run. */
  tokens: number;
  /** Tokens whose pairs the policy decides on (the prompt's; later ones are generated or teacher-forced). */
  prompt: number;
  window: number;
  layers: number;
  kvHeads: number;
  /** Oracle policy: its scores of the prompt (per layer [pos][head]). */
  oracleScores?: Float32Array[];
  decodeEviction: boolean;
  seed: number;
}

export function kvzapSetting(profile: Profile, target: { compression: number } | { tau: number }, window: number, decodeEviction: boolean): PolicySetting {
  const tau =
    "tau" in target ? target.tau : tauForTarget(profile.manifest.tauTable, { compression: Math.min(target.compression, maxTableCompression(profile)) });
  return {
    policy: "kvzap",
    target: "compression" in target ? target.compression : null,
    kv: { policy: "kvzap", profile, tau, window, decodeEviction },
    param: { tau },
  };
}

function maxTableCompression(profile: Profile): number {
  return Math.max(...profile.manifest.tauTable.map((r) => r.compression));
}

/** A baseline set to hold `pairsPerHead` pairs per (layer, KV head) at the end of the run. */
export function matchedSetting(policy: "window" | "random" | "oracle", target: number | null, pairsPerHead: number, m: MatchContext): PolicySetting {
  if (policy === "window") {
    const window = Math.min(windowFor(pairsPerHead), m.tokens);
    return { policy, target, kv: { policy: "window", window, decodeEviction: m.decodeEviction }, param: { window } };
  }
  if (policy === "random") {
    const keep = randomKeepFor(pairsPerHead, m.tokens, m.window);
    return { policy, target, kv: { policy: "random", keep, seed: m.seed, window: m.window, decodeEviction: m.decodeEviction }, param: { keep } };
  }
  // oracle: positions [0, tokens - window) have been decided at the end; the ones past the prompt have no oracle score
  // and stay, so the prompt's decided pairs make up the rest
  const decided = Math.max(0, Math.min(m.prompt, m.tokens - m.window));
  const alwaysKept = m.window + Math.max(0, m.tokens - m.window - m.prompt);
  const keepPairs = Math.max(0, pairsPerHead - alwaysKept) * m.layers * m.kvHeads;
  const tau = tauForKeptPairs(m.oracleScores ?? [], decided, m.kvHeads, keepPairs);
  return {
    policy,
    target,
    kv: { policy: "scores", scores: m.oracleScores, tau: clampTau(tau), window: m.window, decodeEviction: m.decodeEviction },
    param: { tau: clampTau(tau) },
  };
}

function clampTau(t: number): number {
  return Number.isFinite(t) ? t : t > 0 ? 1e30 : -1e30;
}

export const fullSetting: PolicySetting = { policy: "full", target: null, kv: { policy: "full" }, param: {} };

export { DEFAULT_WINDOW };
