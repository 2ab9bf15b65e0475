// The runs an evaluation makes on one prompt, in order: the full cache; KVzap at each target (τ from the surrogate's
// own scores of the prompt, or from the profile's τ table, or a given τ); each baseline matched to the pairs KVzap
// held (or to the target when KVzap is not run). One function walks the plan; the caller runs each setting.
import type { Model } from "../engine/model.js";
import type { Session } from "../engine/session.js";
import type { Profile } from "../profiles/profile.js";
import { openOracleSession, promptOracleScores } from "./oracle.js";
import { tauForKeptPairs, type EvalPolicy } from "./policies.js";
import { fullSetting, kvzapSetting, matchedSetting, type MatchContext, type PolicySetting } from "./setting.js";

export type PrefillMode = "product" | "paper";

export interface PlanOptions {
  policies: readonly EvalPolicy[];
  /** Target compressions (pairs), or a τ grid for KVzap (then the baselines match what KVzap reached). */
  targets: readonly number[];
  taus?: readonly number[];
  tauFrom: "prompt" | "table";
  profile?: Profile;
  window: number;
  seed: number;
  decodeEviction: boolean;
  threads?: number;
}

/** Something a setting's run returns: its memory at the end (for matching) and whatever the caller records. */
export interface RunOutcome {
  pairsPerHead: number;
}

/**
 * Runs `run` for every setting of the plan on one prompt of `prompt` tokens, `tokens` held at the end (`all`: the
 * token ids of the whole run, for scoring the surrogate and the oracle over them). Returns nothing: `run` records.
 */
export async function walkPlan(
  model: Model,
  o: PlanOptions,
  text: { prompt: number; all: readonly number[] },
  run: (s: PolicySetting, key: string) => Promise<RunOutcome | null>,
  skip: (key: string) => RunOutcome | null | undefined,
): Promise<void> {
  const tokens = text.all.length;
  const L = model.info.layers;
  const H = model.info.kvHeads;
  const base: Omit<MatchContext, "oracleScores"> = {
    tokens,
    prompt: text.prompt,
    window: o.window,
    layers: L,
    kvHeads: H,
    decodeEviction: o.decodeEviction,
    seed: o.seed,
  };
  if (o.policies.includes("full")) {
    const key = "full";
    if (skip(key) === undefined) await run(fullSetting, key);
  }
  const others = o.policies.filter((p): p is "window" | "random" | "oracle" => p === "window" || p === "random" || p === "oracle");
  const kvzap = o.policies.includes("kvzap") && o.profile !== undefined;
  let surrogate: Float32Array[] | null = null;
  let oracle: Float32Array[] | undefined;
  const points: { target: number | null; tau?: number }[] =
    kvzap && o.taus ? o.taus.map((tau) => ({ target: null, tau })) : o.targets.map((t) => ({ target: t }));
  for (const point of points) {
    let pairs = point.target !== null ? tokens / point.target : tokens;
    const label = point.tau !== undefined ? `tau=${point.tau}` : `x${point.target}`;
    if (kvzap) {
      const key = `kvzap|${label}`;
      let setting: PolicySetting;
      if (point.tau !== undefined) setting = kvzapSetting(o.profile!, { tau: point.tau }, o.window, o.decodeEviction);
      else if (o.tauFrom === "table") setting = kvzapSetting(o.profile!, { compression: point.target! }, o.window, o.decodeEviction);
      else {
        surrogate ??= await surrogateScores(model, o.profile!, text.all, o.window, o.threads);
        const decided = Math.max(0, tokens - o.window);
        const tau = tauForKeptPairs(surrogate, decided, H, Math.max(0, pairs - o.window) * L * H);
        setting = kvzapSetting(o.profile!, { tau: Number.isFinite(tau) ? tau : tau > 0 ? 1e30 : -1e30 }, o.window, o.decodeEviction);
        setting.target = point.target;
      }
      const done = skip(key) ?? (await run(setting, key));
      if (done) pairs = done.pairsPerHead;
    }
    for (const p of others) {
      const key = `${p}|${label}`;
      if (skip(key) !== undefined) continue;
      if (p === "oracle" && !oracle) {
        const os = await openOracleSession(model, text.prompt, o.threads);
        try {
          oracle = await promptOracleScores(model, os, text.all.slice(0, text.prompt));
        } finally {
          os.session.dispose();
        }
      }
      await run(matchedSetting(p, point.target, pairs, { ...base, oracleScores: oracle }), key);
    }
  }
}

/** The surrogate's scores of every position of `tokens` (nothing evicted), per layer [pos][head]. */
async function surrogateScores(model: Model, profile: Profile, tokens: readonly number[], window: number, threads?: number): Promise<Float32Array[]> {
  const s: Session = await model.createSession({ contextSize: tokens.length + 1, threads, kv: { policy: "kvzap", profile, tau: -1e30, window } });
  try {
    await s.setPrompt(tokens);
    return Array.from({ length: model.info.layers }, (_, l) => s.kvScores(l, 0, tokens.length));
  } finally {
    s.dispose();
  }
}
