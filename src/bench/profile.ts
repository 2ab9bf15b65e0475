// The KVzap profile a benchmark runs with: the one given, else the shipped or user profile that matches the model,
// else one with random weights made for the occasion. At τ = -1e9 every pair is kept whatever the scores, so a random
// surrogate costs exactly what a fitted one of the same kind costs (a [H_kv × D] product per token and layer) and the
// speed measured with it is the real one. Compression and agreement measured with it say nothing about quality.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { findProfileForModel, profileSearchDirs } from "../profiles/find.js";
import { readModelIdentity, type ModelIdentityFile } from "../profiles/fingerprint.js";
import { WEIGHTS_FILE, type ProfileManifest } from "../profiles/manifest.js";
import { loadProfile, validateProfile, writeProfile, type Profile } from "../profiles/profile.js";
import type { LayerWeights } from "../profiles/weights.js";
import { rng } from "../calibrate/rng.js";

export type ProfileSource = "given" | "found" | "random";

export interface BenchProfile {
  profile: Profile;
  source: ProfileSource;
  /** Removes what was made for the benchmark (a random profile's temporary folder); a no-op otherwise. */
  cleanup(): Promise<void>;
}

export interface ProfileInfo {
  source: ProfileSource;
  /** null for a random profile: its temporary folder is gone once the benchmark ends. */
  path: string | null;
  name: string;
  kind: string;
  defaultTau: number;
  window: number;
}

export function profileInfo(p: BenchProfile): ProfileInfo {
  const m = p.profile.manifest;
  return { source: p.source, path: p.source === "random" ? null : p.profile.dir, name: m.name, kind: m.surrogate.kind, defaultTau: m.tau, window: m.window };
}

export async function benchProfile(modelFile: string, options: { profilePath?: string; cacheDir?: string; seed?: number } = {}): Promise<BenchProfile> {
  const identity = await readModelIdentity(modelFile);
  const none = async () => {};
  if (options.profilePath !== undefined) {
    const profile = await loadProfile(options.profilePath);
    validateProfile(profile, identity);
    return { profile, source: "given", cleanup: none };
  }
  const found = await findProfileForModel(identity, identity.fingerprint, profileSearchDirs(options.cacheDir));
  if (found) return { profile: found, source: "found", cleanup: none };
  const dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-bench-profile-"));
  try {
    const { manifest, layers } = randomLinearProfile(identity, options.seed ?? 1);
    const profile = await writeProfile(path.join(dir, "random-linear"), manifest, layers);
    return { profile, source: "random", cleanup: () => rm(dir, { recursive: true, force: true }) };
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

/**
 * A linear surrogate with seeded random weights in the model's shapes. Scores come out around −5 ± a few (as a
 * fitted profile's natural-log scores do), so that τ between −8 and −2 drops a visible share of pairs.
 */
export function randomLinearProfile(identity: ModelIdentityFile, seed: number): { manifest: ProfileManifest; layers: LayerWeights[] } {
  const { embeddingSize: d, kvHeads: h, layers: n } = identity;
  const next = rng(seed);
  const uniform = (count: number, scale: number, shift = 0) => Float32Array.from({ length: count }, () => (next() * 2 - 1) * scale + shift);
  const layers: LayerWeights[] = Array.from({ length: n }, () => ({ kind: "linear" as const, weight: uniform(h * d, 0.1), bias: uniform(h, 3, -5) }));
  const manifest: ProfileManifest = {
    format: "kvzap-profile",
    version: 1,
    name: `random linear surrogate for ${identity.name ?? path.basename(identity.path)} (benchmark only)`,
    model: {
      architecture: identity.architecture,
      layers: n,
      embeddingSize: d,
      kvHeads: h,
      headDim: identity.headDim,
      fingerprint: identity.fingerprint,
      file: path.basename(identity.path),
    },
    surrogate: { kind: "linear", inputDim: d, outputDim: h, hiddenDim: null, layers: n },
    tau: -1e9,
    window: 128,
    tauTable: [],
    provenance: {
      tool: "kvzap bench",
      created: new Date().toISOString(),
      source: `random weights, seed ${seed}`,
      notes: "for speed measurements at τ = -1e9 only, where every pair is kept whatever the scores",
    },
    weights: WEIGHTS_FILE,
  };
  return { manifest, layers };
}
