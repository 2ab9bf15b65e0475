import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { models } from "../../test/helpers/cli.js";
import { unprofiledCopy } from "../../test/helpers/kvzap.js";
import { readModelIdentity } from "../profiles/fingerprint.js";
import { loadProfile, validateProfile } from "../profiles/profile.js";
import { benchProfile, profileInfo, randomLinearProfile } from "./profile.js";

describe("benchmark profiles", () => {
  let cacheDir: string;
  beforeAll(async () => {
    cacheDir = await mkdtemp(path.join(os.tmpdir(), "kvzap-bench-cache-"));
  });
  afterAll(() => rm(cacheDir, { recursive: true, force: true }));

  it("a random linear profile has the model's shapes and fingerprint, and is the same for the same seed", async () => {
    const identity = await readModelIdentity(models.testbed);
    const a = randomLinearProfile(identity, 3);
    expect(a.layers).toHaveLength(8);
    const l0 = a.layers[0];
    if (l0.kind !== "linear") throw new Error("expected a linear layer");
    expect(l0.weight).toHaveLength(2 * 512);
    expect(l0.bias).toHaveLength(2);
    expect(randomLinearProfile(identity, 3).layers[0]).toEqual(l0);
    expect(a.manifest.model.fingerprint).toBe(identity.fingerprint);
  });

  it("with no profile to find, one is made in a temporary folder that cleanup removes", async () => {
    const model = await unprofiledCopy("stories");
    const p = await benchProfile(model, { cacheDir });
    expect(p.source).toBe("random");
    expect(profileInfo(p).path).toBeNull();
    validateProfile(await loadProfile(p.profile.dir), await readModelIdentity(model));
    await p.cleanup();
    await expect(loadProfile(p.profile.dir)).rejects.toThrow(/not found/);
  });

  it("a given profile for another model is refused", async () => {
    const made = await benchProfile(await unprofiledCopy("stories"), { cacheDir });
    try {
      await expect(benchProfile(models.testbed, { profilePath: made.profile.dir })).rejects.toThrow(/is for a model with|made for another model/);
    } finally {
      await made.cleanup();
    }
  });
});
