// The KV-cache flags shared by run, chat and summarize, and how they become a session's KvOptions.
import { requireKvzapSupport } from "../profiles/attention.js";
import { readModelIdentity } from "../profiles/fingerprint.js";
import { findProfileForModel, profileSearchDirs } from "../profiles/find.js";
import { loadProfile, validateProfile, type Profile } from "../profiles/profile.js";
import type { KvOptions, KvPolicyName } from "../engine/kv.js";
import { intFlag, numberFlag } from "./args.js";
import { UsageError, UserError } from "../base/errors.js";
import { oneOf, type OptionDecls } from "./command.js";

/** The KV-cache flags, declared once for every command that runs a model. */
export const KV_OPTIONS = {
  kv: {
    value: "full|window|kvzap|random",
    help: "full: every pair kept (llama.cpp's cache); window: StreamingLLM (4 sink tokens + the recent window); kvzap: pairs whose predicted importance is under τ are dropped once they leave the window; random (a baseline for tests and benchmarks): each head keeps a seeded random --keep fraction of the pairs that leave the window (exactly that share of every 64 positions)",
    default: "kvzap when a profile for the model is found, else full",
    check: oneOf("kv", ["full", "window", "kvzap", "random"]),
  },
  keep: { value: "F", help: "random: the kept fraction, 0..1 (required with --kv random)", check: (v: string) => void numberFlag(v, "keep", 0, 1) },
  "kv-seed": { value: "S", help: "random: which pairs are kept", default: "0", check: (v: string) => void intFlag(v, "kv-seed", 0, 0xffffffff) },
  profile: { value: "PATH", help: "KVzap profile", default: "the shipped or user profile that matches the model" },
  tau: {
    value: "X",
    help: "keep threshold, a natural-log score; -1e9 keeps everything, 1e9 only the window",
    default: "the profile's",
    check: (v: string) => void numberFlag(v, "tau"),
  },
  window: { value: "N", help: "recent tokens always kept", default: "the profile's, else 128", check: (v: string) => void intFlag(v, "window", 0, 1 << 24) },
  "kv-decoding": { value: "on|off", help: "also drop generated tokens", default: "on", check: oneOf("kv-decoding", ["on", "off"]) },
  "kv-budget": {
    value: "B|P%",
    help: "cap on the KV pool: a size in binary units (512M = 512 MiB, 2G = 2 GiB) or a percentage of the full cache for --ctx; when full, the lowest-scoring pairs outside the window go first; protected pairs (--kv-decoding off) never do, and a batch that cannot fit fails before it runs",
    default: "a quarter of physical memory",
    check: (v: string) => void parseBudget(v),
  },
  "kv-block": { value: "N", help: "KV pairs per block", default: "16", check: (v: string) => void intFlag(v, "kv-block", 1, 4096) },
  "kv-type": {
    value: "f16|q8_0",
    help: "how keys and values are stored, for every policy: q8_0 takes 34 bytes per 32 values, 53% of f16 (llama.cpp's -ctk/-ctv q8_0; head sizes must be multiples of 32)",
    default: "f16",
    check: oneOf("kv-type", ["f16", "q8_0"]),
  },
} as const satisfies OptionDecls;

export const KV_GROUP = { title: "KV cache:", options: KV_OPTIONS } as const;

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
  "kv-type"?: string;
}

// Sizes are binary throughout (one unit, MiB, in every table): K, M and G mean KiB, MiB and GiB.
const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/** "512M", "2GiB", "1.5g", "30%" → a byte count (binary units) or a fraction. */
export function parseBudget(value: string): { bytes: number } | { fraction: number } {
  const v = value.trim().toLowerCase();
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(v);
  if (pct) {
    const f = Number(pct[1]) / 100;
    if (f <= 0 || f > 1) throw new UsageError(`--kv-budget must be a percentage in (0, 100], got '${value}'`);
    return { fraction: f };
  }
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/.exec(v);
  if (!m || !(m[2] in SIZE_UNITS)) throw new UsageError(`--kv-budget must be a size (e.g. 512M, 2G: MiB, GiB) or a percentage (e.g. 30%), got '${value}'`);
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
export async function resolveKv(
  flags: KvFlags,
  modelFile: string,
  ctx: { contextSize: number; fullBytesPerToken: number },
  cacheDir?: string,
): Promise<KvOptions & { profile?: Profile }> {
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
      throw new UserError(`no KVzap profile matches ${modelFile}: give one with --profile PATH, make one with kvzap calibrate, or use --kv window`);
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
