// The KV-cache flags shared by run, chat and summarize, and how they become a session's KvOptions.
import { requireKvzapSupport } from "../kv/attention.js";
import { readModelIdentity } from "../kv/fingerprint.js";
import { findProfileForModel, profileSearchDirs } from "../kv/find.js";
import { loadProfile, validateProfile, type Profile } from "../kv/profile.js";
import type { KvOptions, KvPolicyName } from "../engine/kv.js";
import { intFlag, numberFlag } from "./args.js";
import { UsageError, UserError } from "./errors.js";

export const KV_OPTIONS = {
  kv: { type: "string" },
  profile: { type: "string" },
  tau: { type: "string" },
  window: { type: "string" },
  "kv-decoding": { type: "string" },
  "kv-budget": { type: "string" },
  "kv-block": { type: "string" },
  keep: { type: "string" },
  "kv-seed": { type: "string" },
} as const;

export interface KvFlags {
  kv?: string;
  profile?: string;
  tau?: string;
  window?: string;
  "kv-decoding"?: string;
  "kv-budget"?: string;
  "kv-block"?: string;
  keep?: string;
  "kv-seed"?: string;
}

export const KV_HELP = `KV cache:
  --kv full|window|kvzap|random  full: every pair kept (llama.cpp's cache); window: StreamingLLM (4 sink tokens +
                      the recent window); kvzap: pairs whose predicted importance is under τ are dropped once they
                      leave the window (default: kvzap when a profile for the model is found, else full); random
                      (a baseline for tests and benchmarks): each head keeps a seeded random --keep fraction of the
                      pairs that leave the window (exactly that share of every 64 positions)
  --keep F            random: the kept fraction, 0..1 (required with --kv random)
  --kv-seed S         random: which pairs are kept (default 0)
  --profile PATH      KVzap profile (default: the shipped or user profile that matches the model)
  --tau X             keep threshold, a natural-log score (default: the profile's); -1e9 keeps everything,
                      1e9 only the window
  --window N          recent tokens always kept (default: the profile's, else 128)
  --kv-decoding on|off  also drop generated tokens (default on)
  --kv-budget B|P%    cap on the KV pool: bytes (512M, 2G) or a percentage of the full cache for --ctx
                      (default: a quarter of physical memory); when full, the lowest-scoring pairs outside
                      the window go first; protected pairs (--kv-decoding off) never do, and a batch that
                      cannot fit fails before it runs
  --kv-block N        KV pairs per block (default 16)`;

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3 };

/** "512M", "2GiB", "1.5g", "30%" → a byte count or a fraction. */
export function parseBudget(value: string): { bytes: number } | { fraction: number } {
  const v = value.trim().toLowerCase();
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(v);
  if (pct) {
    const f = Number(pct[1]) / 100;
    if (f <= 0 || f > 1) throw new UsageError(`--kv-budget must be a percentage in (0, 100], got '${value}'`);
    return { fraction: f };
  }
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/.exec(v);
  if (!m || !(m[2] in SIZE_UNITS)) throw new UsageError(`--kv-budget must be bytes (e.g. 512M, 2GiB) or a percentage (e.g. 30%), got '${value}'`);
  const bytes = Math.floor(Number(m[1]) * SIZE_UNITS[m[2]]);
  if (bytes <= 0) throw new UsageError(`--kv-budget must be positive, got '${value}'`);
  return { bytes };
}

/** Checks the KV flags before any model is loaded, so that a typo fails fast. */
export function checkKvFlags(flags: KvFlags): void {
  if (flags.kv !== undefined && !["full", "window", "kvzap", "random"].includes(flags.kv)) {
    throw new UsageError(`--kv must be full, window, kvzap or random, got '${flags.kv}'`);
  }
  numberFlag(flags.keep, "keep", 0, 1);
  intFlag(flags["kv-seed"], "kv-seed", 0, 0xffffffff);
  if (flags.kv === "random" && flags.keep === undefined) throw new UsageError("--kv random needs --keep F, the kept fraction (0..1)");
  if (flags.kv !== "random" && (flags.keep !== undefined || flags["kv-seed"] !== undefined)) {
    throw new UsageError("--keep and --kv-seed go with --kv random");
  }
  if (flags.kv === "random" && (flags.profile !== undefined || flags.tau !== undefined)) throw new UsageError("--kv random takes no --profile or --tau");
  numberFlag(flags.tau, "tau");
  intFlag(flags.window, "window", 0, 1 << 24);
  intFlag(flags["kv-block"], "kv-block", 1, 4096);
  if (flags["kv-decoding"] !== undefined && !["on", "off"].includes(flags["kv-decoding"])) {
    throw new UsageError(`--kv-decoding must be on or off, got '${flags["kv-decoding"]}'`);
  }
  if (flags["kv-budget"] !== undefined) parseBudget(flags["kv-budget"]);
  if (flags.kv === "full" && (flags.profile || flags.tau || flags.window || flags["kv-budget"])) {
    throw new UsageError("--profile, --tau, --window and --kv-budget need --kv window or --kv kvzap");
  }
}

/**
 * The session's KV options for the model file: the policy, its profile (found or given, validated against the model)
 * and the settings that override it. `fullBytesPerToken × contextSize` sizes a percentage budget.
 */
export async function resolveKv(flags: KvFlags, modelFile: string, ctx: { contextSize: number; fullBytesPerToken: number }, cacheDir?: string): Promise<KvOptions> {
  checkKvFlags(flags);
  let policy = flags.kv as KvPolicyName | undefined;
  // a model without attention in every layer fails here with one message, not in the native context creation
  if (policy === "kvzap" || policy === "window" || policy === "random" || flags.profile !== undefined) {
    await requireKvzapSupport(modelFile, policy === "kvzap" || flags.profile !== undefined ? "kvzap" : "window");
  }
  let profile: Profile | undefined;
  if (flags.profile !== undefined || policy === "kvzap" || policy === undefined) {
    const identity = await readModelIdentity(modelFile);
    if (flags.profile !== undefined) {
      profile = await loadProfile(flags.profile);
      validateProfile(profile, identity);
    } else {
      profile = (await findProfileForModel(identity, identity.fingerprint, profileSearchDirs(cacheDir))) ?? undefined;
    }
    if (!profile && policy === "kvzap") {
      throw new UserError(
        `no KVzap profile matches ${modelFile}: give one with --profile PATH, make one with kvzap calibrate, or use --kv window`,
      );
    }
    policy ??= profile ? "kvzap" : "full";
  }
  if (policy === "full") return { policy: "full" };
  const budget = flags["kv-budget"] === undefined ? undefined : parseBudget(flags["kv-budget"]);
  return {
    policy,
    profile: policy === "kvzap" ? profile : undefined,
    tau: numberFlag(flags.tau, "tau"),
    window: intFlag(flags.window, "window", 0, 1 << 24),
    blockSize: intFlag(flags["kv-block"], "kv-block", 1, 4096),
    decodeEviction: flags["kv-decoding"] === undefined ? undefined : flags["kv-decoding"] === "on",
    budgetBytes: budget === undefined ? undefined : "bytes" in budget ? budget.bytes : Math.floor(budget.fraction * ctx.contextSize * ctx.fullBytesPerToken),
    keep: numberFlag(flags.keep, "keep", 0, 1),
    seed: intFlag(flags["kv-seed"], "kv-seed", 0, 0xffffffff),
  };
}
