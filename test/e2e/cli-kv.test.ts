// KV flags through the real CLI: policies, savings in the JSON stats, and bad input.
import { mkdtemp, rm, writeFile, mkdir, copyFile, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanFailure, kvzap, models } from "../helpers/cli.js";
import { writeMambaModel } from "../helpers/gguf-writer.js";
import { randomProfileFor, unprofiledCopy } from "../helpers/kvzap.js";

const prompt = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ".repeat(14);

describe("kvzap run with KV policies", () => {
  let dir: string;
  let storiesProfile: string;
  let testbedProfile: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-kv-"));
    storiesProfile = (await randomProfileFor("stories", "linear")).dir;
    testbedProfile = (await randomProfileFor("testbed", "mlp")).dir;
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("--kv kvzap with a profile frees memory as τ rises and reports it in --json", async () => {
    const base = ["run", models.stories, "--prompt", prompt, "-n", "16", "--temp", "0", "--json", "--kv", "kvzap", "--profile", storiesProfile];
    const keepAll = JSON.parse((await kvzap([...base, "--tau", "-1e9"])).stdout);
    const keepWindow = JSON.parse((await kvzap([...base, "--tau", "1e9", "--window", "32"])).stdout);
    expect(keepAll.stats.kv.policy).toBe("kvzap");
    expect(keepAll.stats.kv.bytesInUse).toBeGreaterThanOrEqual(keepAll.stats.kv.bytesFullEquivalent);
    expect(keepWindow.stats.kv.bytesInUse).toBeLessThan(keepAll.stats.kv.bytesInUse * 0.4);
    expect(keepWindow.stats.kv.layers).toHaveLength(5);
    // τ = -1e9 keeps every pair: the same greedy text as the full cache
    const full = JSON.parse((await kvzap(["run", models.stories, "--prompt", prompt, "-n", "16", "--temp", "0", "--json", "--kv", "full"])).stdout);
    expect(keepAll.text).toBe(full.text);
  });

  it("--kv-type q8_0 stores 34 bytes per 32 values, for the full cache and for KVzap alike", async () => {
    const base = ["run", models.testbed, "--prompt", prompt, "-n", "8", "--temp", "0", "--json", "--ctx", "1024"];
    const bytes = async (...args: string[]) => JSON.parse((await kvzap([...base, ...args])).stdout).stats.kv;
    const fullF16 = await bytes("--kv", "full");
    const fullQ8 = await bytes("--kv", "full", "--kv-type", "q8_0");
    expect(fullQ8.bytesFullAllocation / fullF16.bytesFullAllocation).toBeCloseTo(34 / 64, 3);
    const kzF16 = await bytes("--kv", "kvzap", "--profile", testbedProfile, "--tau", "-1e9");
    const kzQ8 = await bytes("--kv", "kvzap", "--profile", testbedProfile, "--tau", "-1e9", "--kv-type", "q8_0");
    expect(kzQ8.bytesFullEquivalent / kzF16.bytesFullEquivalent).toBeCloseTo(34 / 64, 3);
    expect(kzQ8.bytesInUse / kzF16.bytesInUse).toBeCloseTo(34 / 64, 3);
  });

  it("--kv window keeps sinks and the window; --kv-budget caps the pool", async () => {
    const r = JSON.parse(
      (await kvzap(["run", models.stories, "--prompt", prompt, "-n", "8", "--temp", "0", "--json", "--kv", "window", "--window", "64"])).stdout,
    );
    expect(r.stats.kv.policy).toBe("window");
    expect(r.stats.kv.bytesInUse).toBeLessThan(r.stats.kv.bytesFullEquivalent / 2);
    // τ = -1e9 keeps every pair; a budget of half a 512-token cache binds on the ~300-token prompt: the lowest-scoring
    // pairs go until the blocks fit, and the stats say so
    const b = await kvzap([
      "run",
      models.stories,
      "--prompt",
      prompt,
      "-n",
      "8",
      "--temp",
      "0",
      "--json",
      "--kv",
      "kvzap",
      "--profile",
      storiesProfile,
      "--tau",
      "-1e9",
      "--kv-budget",
      "50%",
      "--ctx",
      "512",
      "--window",
      "32",
      "--batch",
      "64",
    ]);
    expect(b.stderr).toBe("");
    const kv = JSON.parse(b.stdout).stats.kv;
    expect(kv.bytesFullEquivalent).toBeGreaterThan(0.5 * 512 * 640);
    expect(kv.bytesInUse).toBeLessThanOrEqual(0.5 * 512 * 640);
    expect(kv.budgetEvicted).toBeGreaterThan(0);
    expect(kv.tauEffective).toBeGreaterThan(-1e9);
  });

  it("an MLP profile on the test-bed model runs", async () => {
    const r = await kvzap([
      "run",
      models.testbed,
      "--prompt",
      prompt,
      "-n",
      "8",
      "--temp",
      "0",
      "--json",
      "--kv",
      "kvzap",
      "--profile",
      testbedProfile,
      "--tau",
      "-4",
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).stats.kv.policy).toBe("kvzap");
  });

  const bad: [string, () => Promise<string[]>, RegExp][] = [
    [
      "a profile for another model",
      async () => ["run", models.stories, "-p", "hi", "--kv", "kvzap", "--profile", testbedProfile],
      /is for a model with 8 layers, this model has 5/,
    ],
    [
      "a corrupt profile (manifest not JSON)",
      async () => {
        const d = path.join(dir, "corrupt");
        await mkdir(d, { recursive: true });
        await copyFile(path.join(storiesProfile, "weights.safetensors"), path.join(d, "weights.safetensors"));
        await writeFile(path.join(d, "profile.json"), "{ this is not json");
        return ["run", models.stories, "-p", "hi", "--profile", d];
      },
      /profile\.json.*(JSON|json)/,
    ],
    [
      "a random-bytes profile",
      async () => {
        const d = path.join(dir, "random");
        await mkdir(d, { recursive: true });
        await copyFile(path.join(storiesProfile, "profile.json"), path.join(d, "profile.json"));
        await writeFile(path.join(d, "weights.safetensors"), Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 251)));
        return ["run", models.stories, "-p", "hi", "--profile", d];
      },
      /not a safetensors file|truncated/,
    ],
    [
      "a truncated weights file",
      async () => {
        const d = path.join(dir, "truncated");
        await mkdir(d, { recursive: true });
        await copyFile(path.join(storiesProfile, "profile.json"), path.join(d, "profile.json"));
        const w = await readFile(path.join(storiesProfile, "weights.safetensors"));
        await writeFile(path.join(d, "weights.safetensors"), w.subarray(0, Math.floor(w.length / 2)));
        return ["run", models.stories, "-p", "hi", "--profile", d];
      },
      /truncated/,
    ],
    ["--tau abc", async () => ["run", models.stories, "-p", "hi", "--kv", "kvzap", "--tau", "abc"], /--tau must be a number, got 'abc'/],
    ["--window -1", async () => ["run", models.stories, "-p", "hi", "--kv", "window", "--window", "-1"], /--window must be between 0 and \d+, got -1/],
    ["--kv bogus", async () => ["run", models.stories, "-p", "hi", "--kv", "bogus"], /--kv must be full, window, kvzap or random/],
    ["--kv random without --keep", async () => ["run", models.stories, "-p", "hi", "--kv", "random"], /--kv random needs --keep F/],
    ["--keep 1.5", async () => ["run", models.stories, "-p", "hi", "--kv", "random", "--keep", "1.5"], /--keep must be between 0 and 1, got 1.5/],
    [
      "--keep without --kv random",
      async () => ["run", models.stories, "-p", "hi", "--kv", "window", "--keep", "0.5"],
      /--keep and --kv-seed go with --kv random/,
    ],
    ["--kv-budget lots", async () => ["run", models.stories, "-p", "hi", "--kv", "window", "--kv-budget", "lots"], /--kv-budget must be a size/],
    [
      "--kv kvzap without a profile for the model",
      async () => ["run", await unprofiledCopy("stories"), "-p", "hi", "--kv", "kvzap"],
      /no KVzap profile matches/,
    ],
    ["--kv-type q4_0", async () => ["run", models.stories, "-p", "hi", "--kv-type", "q4_0"], /--kv-type must be f16 or q8_0/],
    [
      "--kv-type q8_0 on heads of 8 values (q8_0 blocks hold 32)",
      async () => ["run", models.stories, "-p", "hi", "--kv", "full", "--kv-type", "q8_0"],
      /K cache type q8_0 with block size 32 does not divide n_embd_head_k=8/,
    ],
    [
      "a budget too small for the window",
      async () => ["run", models.stories, "-p", "hi", "--kv", "window", "--kv-budget", "1K"],
      /budget .* smaller than the window/,
    ],
  ];
  for (const [what, args, message] of bad) {
    it(`${what}: one clear message, exit ≠ 0, no crash`, async () => {
      const r = await kvzap(await args());
      expectCleanFailure(r);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
    });
  }
});

describe("a model without attention (a real Mamba GGUF)", () => {
  let dir: string;
  let mamba: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-kv-mamba-"));
    mamba = path.join(dir, "mamba.gguf");
    await writeMambaModel(mamba);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("--kv full runs it: stock llama.cpp, tokens generated", async () => {
    const r = await kvzap(["run", mamba, "--prompt", "Once upon a time", "-n", "8", "--temp", "0", "--json", "--kv", "full"]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.stats.kv.policy).toBe("full");
    expect(out.stats.generatedTokens).toBe(8);
    expect(out.text.length).toBeGreaterThan(0);
  });

  for (const policy of ["kvzap", "window"] as const) {
    it(`--kv ${policy}: one clear message before the model loads, exit 1, no crash`, async () => {
      const r = await kvzap(["run", mamba, "-p", "hi", "--kv", policy]);
      expectCleanFailure(r);
      expect(r.code).toBe(1);
      const what = policy === "kvzap" ? "KVzap" : "the window policy";
      expect(r.stderr).toBe(
        `kvzap run: ${mamba} is a 'mamba' model with no attention layers: ${what} drops key/value pairs of attention layers, so --kv ${policy} cannot run it; use --kv full\n`,
      );
    });
  }
});

describe("a corrupt profile in the user profile folder", () => {
  it("is skipped with one warning naming it when chosen automatically; an explicit --profile still fails hard", async () => {
    const cache = await mkdtemp(path.join(os.tmpdir(), "kvzap-corrupt-profile-"));
    try {
      const corrupt = path.join(cache, "profiles", "stories-corrupt");
      await mkdir(corrupt, { recursive: true });
      const source = (await randomProfileFor("stories", "linear", 7)).dir;
      await copyFile(path.join(source, "profile.json"), path.join(corrupt, "profile.json"));
      const weights = await readFile(path.join(source, "weights.safetensors"));
      await writeFile(path.join(corrupt, "weights.safetensors"), weights.subarray(0, Math.floor(weights.length / 2)));
      const env = { KVZAP_CACHE_DIR: cache };
      const auto = await kvzap(["run", models.stories, "--prompt", "Once upon a time", "-n", "4", "--temp", "0", "--json"], { env });
      expect(auto.code).toBe(0);
      const warnings = auto.stderr.split("\n").filter((l) => l.includes("warning"));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(new RegExp(`skipping the profile ${corrupt} for this model: .*; using .*profiles/stories260K-`));
      expect(JSON.parse(auto.stdout).stats.kv.policy).toBe("kvzap"); // the shipped profile took over
      const explicit = await kvzap(["run", models.stories, "--prompt", "Once upon a time", "-n", "4", "--profile", corrupt], { env });
      expectCleanFailure(explicit);
      expect(explicit.code).toBe(1);
      expect(explicit.stderr).toMatch(new RegExp(corrupt.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
    } finally {
      await rm(cache, { recursive: true, force: true });
    }
  });
});
