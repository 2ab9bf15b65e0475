// Helpers for KVzap tests: random profiles written to disk for the fixture models, logits comparison.
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { modelFingerprint } from "../../src/kv/fingerprint.js";
import { loadProfile, writeProfile, type Profile } from "../../src/kv/profile.js";
import type { SurrogateKind } from "../../src/kv/manifest.js";
import { fixtureModels, randomProfile } from "../fixtures/profiles/random-profile.js";

const made = new Map<string, Profile>();

/** A profile with seeded random weights for a fixture model, written once per test process. */
export async function randomProfileFor(model: "stories" | "testbed", kind: SurrogateKind = "linear", seed = 1): Promise<Profile> {
  const key = `${model}/${kind}/${seed}`;
  const hit = made.get(key);
  if (hit) return hit;
  const fp = await modelFingerprint(fixtureModels[model]);
  const { manifest, layers } = randomProfile(model, kind, fp, seed);
  const dir = path.join(mkdtempSync(path.join(os.tmpdir(), "kvzap-profile-")), `${model}-${kind}`);
  await writeProfile(dir, manifest, layers);
  const profile = await loadProfile(dir);
  made.set(key, profile);
  return profile;
}

/** max |a - b| / max |b|: the error of a against the reference b, relative to the logits' scale. NaN never passes. */
export function maxRelError(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (Number.isNaN(d)) return Infinity;
    num = Math.max(num, d);
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / den;
}

/** erf to ~1e-7 (Abramowitz and Stegun 7.1.26 is 1.5e-7; this uses a higher-order series/continued fraction mix). */
export function erf(x: number): number {
  // Taylor series converges fast for |x| < 3; beyond that erf(x) = ±1 within 2e-5 and the tail formula is used.
  const ax = Math.abs(x);
  if (ax < 3) {
    let sum = x;
    let term = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // asymptotic complementary error function
  const t = 1 / (2 * x * x);
  const erfc = (Math.exp(-x * x) / (ax * Math.sqrt(Math.PI))) * (1 - t + 3 * t * t - 15 * t * t * t);
  return Math.sign(x) * (1 - erfc);
}
