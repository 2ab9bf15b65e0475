// The configurations `kvzap bench speed` compares, named on the command line.
import { UsageError } from "../base/errors.js";
import type { KvOptions } from "../engine/kv.js";
import type { Profile } from "../profiles/profile.js";

/** τ at which every pair is kept: KVzap does the same work as the full cache, through its own store and kernel. */
export const KEEP_ALL_TAU = -1e9;

export type Variant =
  { name: string; kind: "stock"; flashAttention?: boolean } | { name: string; kind: "kvzap"; tau: number } | { name: string; kind: "window"; window?: number };

export const VARIANT_HELP = `stock (the full cache, llama.cpp's attention with its default flash-attention setting),
                      stock-fa / stock-nofa (flash attention forced on / off), kvzap (τ = -1e9: keeps every pair),
                      kvzap@τ (e.g. kvzap@-4), window, window@N (StreamingLLM: 4 sinks + the last N tokens)`;

export function parseVariant(spec: string): Variant {
  const s = spec.trim();
  if (s === "stock") return { name: s, kind: "stock" };
  if (s === "stock-fa") return { name: s, kind: "stock", flashAttention: true };
  if (s === "stock-nofa") return { name: s, kind: "stock", flashAttention: false };
  if (s === "kvzap") return { name: s, kind: "kvzap", tau: KEEP_ALL_TAU };
  if (s === "window") return { name: s, kind: "window" };
  const kz = /^kvzap@(.+)$/.exec(s);
  if (kz) {
    const tau = Number(kz[1]);
    if (kz[1].trim() === "" || !Number.isFinite(tau)) throw new UsageError(`--variants: τ in '${s}' must be a number (e.g. kvzap@-4)`);
    return { name: s, kind: "kvzap", tau };
  }
  const w = /^window@(\d+)$/.exec(s);
  if (w) return { name: s, kind: "window", window: Number(w[1]) };
  throw new UsageError(`--variants: unknown variant '${s}'; the variants are ${VARIANT_HELP.replace(/\s+/g, " ")}`);
}

export function parseVariants(list: string): Variant[] {
  const specs = list
    .split(",")
    .map((x) => x.trim())
    .filter((x) => x !== "");
  if (specs.length === 0) throw new UsageError("--variants lists no variant");
  const out = specs.map(parseVariant);
  const seen = new Set<string>();
  for (const v of out) {
    if (seen.has(v.name)) throw new UsageError(`--variants names '${v.name}' twice`);
    seen.add(v.name);
  }
  return out;
}

export function needsProfile(variants: readonly Variant[]): boolean {
  return variants.some((v) => v.kind === "kvzap");
}

/** The session options of a variant: its KV policy and, for the stock path, the flash-attention setting. */
export function variantSession(v: Variant, profile: Profile | undefined): { kv: KvOptions; flashAttention?: boolean } {
  switch (v.kind) {
    case "stock":
      return { kv: { policy: "full" }, flashAttention: v.flashAttention };
    case "kvzap":
      if (!profile) throw new Error(`variant ${v.name} needs a profile`);
      return { kv: { policy: "kvzap", profile, tau: v.tau } };
    case "window":
      return { kv: { policy: "window", window: v.window } };
  }
}
