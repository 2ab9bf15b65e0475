// Helpers for KVzap tests: random profiles written to disk for the fixture models, logits comparison.
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { modelFingerprint } from "../../src/profiles/fingerprint.js";
import { loadProfile, writeProfile, type Profile } from "../../src/profiles/profile.js";
import type { SurrogateKind } from "../../src/profiles/manifest.js";
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

/**
 * A copy of a fixture model that no shipped profile matches: one attn_norm weight nudged, so its fingerprint differs
 * while it computes (almost) the same. For tests of what happens when no profile is found.
 */
export async function unprofiledCopy(model: "stories" | "testbed"): Promise<string> {
  const { readGgufFileInfo } = await import("node-llama-cpp");
  const { copyFileSync, existsSync, openSync, readSync, writeSync, closeSync } = await import("node:fs");
  const src = fixtureModels[model];
  const out = path.join(os.tmpdir(), `kvzap-unprofiled-${path.basename(src)}`);
  if (existsSync(out)) return out;
  const info = await readGgufFileInfo(src, { logWarnings: false });
  const t = info.tensorInfo!.find((x) => x.name === "blk.0.attn_norm.weight")!;
  const tmp = `${out}.${process.pid}.tmp`;
  copyFileSync(src, tmp);
  const fd = openSync(tmp, "r+");
  const b = Buffer.alloc(4);
  readSync(fd, b, 0, 4, Number(t.fileOffset));
  b.writeFloatLE(b.readFloatLE(0) * (1 + 1e-6) + 1e-7, 0);
  writeSync(fd, b, 0, 4, Number(t.fileOffset));
  closeSync(fd);
  const { renameSync } = await import("node:fs");
  renameSync(tmp, out);
  return out;
}
