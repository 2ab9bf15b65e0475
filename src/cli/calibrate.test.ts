// kvzap calibrate end to end on stories260K (few, short prompts, so it is fast): the profile and report it writes,
// resuming from the oracle cache (also after a kill), and one clear message for each kind of bad input.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corpora, models, repoRoot } from "../../test/helpers/cli.js";
import { loadAddon } from "../engine/addon.js";
import { readModelIdentity } from "../profiles/fingerprint.js";
import { loadProfile, validateProfile } from "../profiles/profile.js";
import type { CalibrationReport } from "../commands/calibrate.js";
import { main } from "./calibrate.js";
import { captureCommands, runMain } from "../../test/helpers/in-process.js";
import { randomLayers } from "../../test/fixtures/profiles/random-profile.js";
import { OracleCache } from "../calibrate/cache.js";
import { predict, r2PerHead } from "../calibrate/fit.js";
import type { LayerWeights } from "../profiles/weights.js";

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
import { writeMambaModel } from "../../test/helpers/gguf-writer.js";

let tmp: string;
const stories = path.join(corpora, "tinystories-train-head-944K.txt");
/** Short prompts and a short window, so that 3x is reachable on ~300-token held-out prompts. */
const base = ["--data", stories, "--prompt-tokens", "240", "--window", "32", "--threads", "2"];
const quick = [...base, "--target", "3x"];

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kvzap-calibrate-cli-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const io = captureCommands(() => path.join(tmp, "config"));

/** What the dispatcher in main.ts does with a command: the exit code, thrown errors mapped to theirs. */
const kvzapCalibrate = (...argv: string[]) => runMain(main, argv);

function report(): CalibrationReport {
  return JSON.parse(io.stdout) as CalibrationReport;
}

describe("kvzap calibrate", () => {
  it("writes a linear profile that fits the model, and a report with R², τ and the measured compression", async () => {
    const out = path.join(tmp, "stories-linear");
    expect(await kvzapCalibrate(models.stories, "--kind", "linear", "--out", out, "--prompts", "6", ...quick, "--check", "--json")).toEqual({ code: 0 });
    const r = report();
    expect(JSON.parse(fs.readFileSync(path.join(out, "report.json"), "utf8"))).toEqual(r);
    // R² per layer and head on the held-out prompt
    expect(r.r2.perLayer).toHaveLength(5);
    expect(r.r2.perHead).toHaveLength(5);
    for (const row of r.r2.perHead) expect(row).toHaveLength(4);
    expect(r.r2.heldOutPrompts).toBe(1);
    expect(r.r2.trainPairs).toBeGreaterThan(1000);
    expect(Number.isFinite(r.r2.mean)).toBe(true);
    expect(r.r2.trainMean).toBeGreaterThan(0);
    // τ: chosen from the table, and the real memory within ±10% of 3x
    expect(r.tau.target).toEqual({ compression: 3 });
    expect(r.tau.table.length).toBeGreaterThan(10);
    expect(r.tau.withinTolerance).toBe(true);
    expect(Math.abs(r.tau.measuredCompression / 3 - 1)).toBeLessThanOrEqual(0.1);
    expect(r.tau.prompts).toBe(4);
    // data, settings, timings, oracle and check
    expect(r.data.files).toEqual([expect.objectContaining({ path: stories, sha256: expect.stringMatching(/^[0-9a-f]{64}$/) })]);
    expect(r.data.prompts.filter((p) => p.role === "fit")).toHaveLength(5);
    expect(r.settings).toMatchObject({ kind: "linear", prompts: 6, seed: 0, window: 32 });
    const stages = ["data", "load", "oracle", "fit", "tau", "verify", "check", "write"];
    expect(Object.keys(r.timings).sort()).toEqual([...stages, "total"].sort());
    const summed = stages.reduce((s, k) => s + r.timings[k], 0);
    expect(Math.abs(r.timings.total - summed)).toBeLessThan(0.05 + 0.01 * summed);
    expect(r.oracle).toMatchObject({ prompts: 6, computed: 6, cached: 0 });
    // auto: the oracle and the MLP computed on CUDA when this build sees a device, else on the CPU
    const cuda = loadAddon().systemInfo().cudaDevices;
    expect(r.device).toEqual({ requested: "auto", used: cuda > 0 ? "cuda" : "cpu", cudaDevices: cuda });
    expect(r.oracle.device).toBe(r.device.used);
    // the check ran KVzap at the chosen τ: pairs were really dropped, so its distributions differ from the full cache's
    expect(r.check!.tokens).toBeGreaterThan(100);
    expect(r.check!.compression).toBeGreaterThan(1.5);
    expect(r.check!.klMean).toBeGreaterThan(0);
    expect(r.check!.perplexityKvzap).not.toBe(r.check!.perplexityFull);
    // the profile: loads, fits stories260K by fingerprint, carries τ, its table and where it came from
    const profile = await loadProfile(out);
    validateProfile(profile, await readModelIdentity(models.stories));
    const m = profile.manifest;
    expect(m.surrogate).toMatchObject({ kind: "linear", inputDim: 64, outputDim: 4, layers: 5, hiddenDim: null });
    expect(m.tau).toBe(r.tau.chosen);
    expect(m.window).toBe(32);
    expect(m.tauTable).toEqual(r.tau.table);
    expect(m.provenance.tool).toMatch(/^kvzap calibrate /);
    expect(m.provenance.data).toEqual([expect.objectContaining({ file: path.basename(stories), sha256: r.data.files[0].sha256 })]);
    // the written surrogate predicts the held-out oracle scores better than random weights with the same bias
    const heldOut = r.data.prompts.filter((p) => p.role === "heldout").map((p) => p.id);
    expect(heldOut).toHaveLength(1);
    const cacheDir = `${out}.cache`;
    const cache = await OracleCache.open(cacheDir, JSON.parse(fs.readFileSync(path.join(cacheDir, "index.json"), "utf8")).settings);
    const random = randomLayers("linear", 64, 4, 5, 7);
    let fitted = 0;
    let baseline = 0;
    for (let l = 0; l < 5; l++) {
      const pairs = await cache.layer(heldOut, l);
      const layer = profile.layers[l] as Extract<LayerWeights, { kind: "linear" }>;
      const noise = { ...(random[l] as Extract<LayerWeights, { kind: "linear" }>), bias: layer.bias };
      fitted += mean(r2PerHead(predict(layer, pairs.x, pairs.n, 64, 4), pairs.y, pairs.n, 4)) / 5;
      baseline += mean(r2PerHead(predict(noise, pairs.x, pairs.n, 64, 4), pairs.y, pairs.n, 4)) / 5;
    }
    expect(fitted).toBeGreaterThan(0);
    expect(fitted).toBeGreaterThan(baseline + 0.05);
    expect(fitted).toBeCloseTo(r.r2.mean, 2);
    // progress went to stderr
    expect(io.stderr).toMatch(new RegExp(`KVzip\\+ oracle on 6 prompts of \\d+–\\d+ tokens, on ${cuda > 0 ? "CUDA" : "the CPU"}`));
    expect(io.stderr).toMatch(/fitting 5 layers \(ridge regression\) on 5 prompts, on the CPU; R² on 1 held out/);
  });

  it("an MLP profile for a kept fraction, with a printed summary", async () => {
    const out = path.join(tmp, "stories-mlp");
    expect(await kvzapCalibrate(models.stories, "--kind", "mlp", "--out", out, "--prompts", "4", ...base, "--keep", "0.4")).toEqual({ code: 0 });
    expect(io.stdout).toMatch(/stories260K\.gguf, mlp surrogate, 4 prompts \(1 held out\)/);
    expect(io.stdout).toMatch(/^mean\s+-?\d\.\d{3}/m);
    expect(io.stdout).toMatch(
      /τ = -?\d+(\.\d+)? for keep 40\.0% \(window 32\): table keeps 40\.0%, measured keeps \d+\.\d% \(\d\.\d\dx\) on 4 held-out prompts \(within ±10%\)/,
    );
    const profile = await loadProfile(out);
    expect(profile.manifest.surrogate).toMatchObject({ kind: "mlp", hiddenDim: 8 });
  });

  it("a second run takes every prompt from the oracle cache", async () => {
    const out = path.join(tmp, "stories-twice");
    const args = [models.stories, "--kind", "linear", "--out", out, "--prompts", "4", ...quick, "--json"];
    expect(await kvzapCalibrate(...args)).toEqual({ code: 0 });
    const first = report();
    expect(first.oracle).toMatchObject({ prompts: 4, computed: 4, cached: 0 });
    io.stdout = "";
    // the profile is there: a rerun replaces it only with --force (as profile import), the cache still serves it
    expect(await kvzapCalibrate(...args)).toMatchObject({ code: 1, message: expect.stringMatching(/already exists \(a profile\); pass --force/) });
    expect(await kvzapCalibrate(...args, "--force")).toEqual({ code: 0 });
    const second = report();
    expect(second.oracle).toMatchObject({ prompts: 4, computed: 0, cached: 4, device: null });
    // the same pairs give the same surrogate and τ
    expect(second.tau.chosen).toBe(first.tau.chosen);
    expect(second.r2).toEqual(first.r2);
  });

  it("resumes after being killed: prompts cached before the kill are not computed again", async () => {
    const out = path.join(tmp, "stories-killed");
    const args = [models.stories, "--kind", "linear", "--out", out, "--prompts", "16", ...quick, "--json"];
    const index = path.join(`${out}.cache`, "index.json");
    const cachedNow = () => {
      try {
        return Object.keys(JSON.parse(fs.readFileSync(index, "utf8")).prompts).length;
      } catch {
        return 0;
      }
    };
    // the built command in a process of its own (npx tsc -p tsconfig.build.json first)
    const entry = pathToFileURL(path.join(repoRoot, "dist", "cli", "calibrate.js")).href;
    const child = spawn(
      process.execPath,
      ["--input-type=module", "-e", `const m = await import(${JSON.stringify(entry)}); process.exitCode = await m.main(process.argv.slice(1));`, "--", ...args],
      {
        env: { ...process.env, KVZAP_CONFIG_DIR: path.join(tmp, "config") },
        stdio: "ignore",
      },
    );
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)));
    const deadline = Date.now() + 60_000;
    while (cachedNow() < 2 && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    child.kill("SIGKILL");
    expect(await exited).toBe("SIGKILL");
    const cached = cachedNow();
    expect(cached).toBeGreaterThanOrEqual(2);
    expect(cached).toBeLessThan(16);
    expect(fs.existsSync(out)).toBe(false); // it never got to write the profile

    expect(await kvzapCalibrate(...args)).toEqual({ code: 0 });
    expect(report().oracle).toMatchObject({ prompts: 16, cached, computed: 16 - cached });
    expect(io.stderr).toMatch(new RegExp(`resuming: ${cached} of 16 prompts cached`));
  });
});

describe("kvzap calibrate: bad input", () => {
  it("--help", async () => {
    expect(await kvzapCalibrate("--help")).toEqual({ code: 0 });
    expect(io.stdout).toMatch(/^usage: kvzap calibrate \[MODEL\] --kind linear\|mlp --out DIR/);
    expect(io.stdout).toMatch(/--target R/);
    expect(io.stdout).toMatch(/--keep F/);
  });

  it("usage errors: no --kind, no --out, --target and --keep, a bad target", async () => {
    expect(await kvzapCalibrate(models.stories, "--out", path.join(tmp, "x"))).toEqual({ code: 2, message: "--kind linear|mlp is required" });
    expect(await kvzapCalibrate(models.stories, "--kind", "linear")).toMatchObject({ code: 2, message: expect.stringMatching(/--out DIR is required/) });
    expect(await kvzapCalibrate(models.stories, "--kind", "linear", "--out", "x", "--target", "3x", "--keep", "0.3")).toEqual({
      code: 2,
      message: "give --target or --keep, not both",
    });
    expect(await kvzapCalibrate(models.stories, "--kind", "linear", "--out", "x", "--target", "0.5x")).toMatchObject({
      code: 2,
      message: expect.stringMatching(/--target must be a compression ratio of at least 1/),
    });
    expect(await kvzapCalibrate(models.stories, "--kind", "cubic", "--out", "x")).toMatchObject({
      code: 2,
      message: "--kind must be linear or mlp, got 'cubic'",
    });
  });

  it("data with no text", async () => {
    const dir = path.join(tmp, "empty-data");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "a.txt"), "");
    fs.writeFileSync(path.join(dir, "b.md"), "\n  \n");
    const r = await kvzapCalibrate(models.stories, "--kind", "linear", "--out", path.join(tmp, "none"), "--data", dir);
    expect(r.code).toBe(1);
    expect(r.message).toMatch(/^the calibration data holds no text/);
    // several paths, one --data each
    const both = await kvzapCalibrate(
      models.stories,
      "--data",
      path.join(dir, "a.txt"),
      "--data",
      path.join(dir, "b.md"),
      "--kind",
      "linear",
      "--out",
      path.join(tmp, "none"),
    );
    expect(both.code).toBe(1);
    expect(both.message).toMatch(/^the calibration data holds no text \(.*a\.txt: .*b\.md: /);
  });

  it("too little data for the prompts asked", async () => {
    const file = path.join(tmp, "short.txt");
    fs.writeFileSync(file, fs.readFileSync(stories, "utf8").slice(0, 6000));
    const r = await kvzapCalibrate(
      models.stories,
      "--kind",
      "linear",
      "--out",
      path.join(tmp, "few"),
      "--data",
      file,
      "--prompts",
      "20",
      "--prompt-tokens",
      "240",
    );
    expect(r.code).toBe(1);
    expect(r.message).toMatch(/^the data holds \d+ prompts? of ~240 tokens, --prompts asks for 20/);
  });

  it("a GGUF file that is not a model: the usual GGUF error, nothing written", async () => {
    const fake = path.join(tmp, "not-a-model.gguf");
    fs.writeFileSync(fake, Buffer.concat([Buffer.from("GGUF"), Buffer.from([3, 0, 0, 0]), Buffer.alloc(64, 0xff)]));
    const out = path.join(tmp, "fake");
    const r = await kvzapCalibrate(fake, "--kind", "linear", "--out", out, "--data", stories);
    expect(r.code).toBe(1);
    expect(r.message).toMatch(/GGUF file is truncated or corrupted|not a GGUF model file/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it("a model without attention (a real Mamba GGUF)", async () => {
    const mamba = path.join(tmp, "mamba.gguf");
    await writeMambaModel(mamba);
    const out = path.join(tmp, "mamba-profile");
    const r = await kvzapCalibrate(mamba, "--kind", "linear", "--target", "3x", "--out", out, "--data", stories);
    expect(r).toEqual({
      code: 1,
      message: `${mamba} is a 'mamba' model with no attention layers: KVzap scores the key/value pairs of attention layers, so it cannot be calibrated`,
    });
    // refused before any work: no data read, no profile folder, no oracle cache
    expect(io.stderr).toBe("");
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.existsSync(`${out}.cache`)).toBe(false);
  });

  it("--device: a bad value is a usage error; cuda on a build without a CUDA device is refused before any work", async () => {
    expect(await kvzapCalibrate(models.stories, "--kind", "linear", "--out", "x", "--device", "tpu")).toEqual({
      code: 2,
      message: "--device must be auto, cpu or cuda, got 'tpu'",
    });
    if (loadAddon().systemInfo().cudaDevices > 0) return; // a CUDA machine runs it (scripts/gpu/check-calibration.sh)
    const out = path.join(tmp, "no-cuda");
    const r = await kvzapCalibrate(models.stories, "--kind", "mlp", "--out", out, "--device", "cuda", "--data", stories);
    expect(r.code).toBe(1);
    expect(r.message).toMatch(/^--device cuda: (this kvzap was built for the CPU|no CUDA device is visible)/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it("--data takes one path per flag: a path after it that is not the model is a usage error, not the model", async () => {
    const r = await kvzapCalibrate("--kind", "linear", "--out", path.join(tmp, "x"), "--data", stories, stories, models.stories);
    expect(r).toMatchObject({ code: 2, message: expect.stringMatching(/one MODEL \(give calibration files with --data, once per path\) expected, got 2/) });
  });

  it("never two writers: a folder another live kvzap is writing is refused, a dead writer's lock is taken over", async () => {
    const out = path.join(tmp, "locked");
    const holder = spawn("sleep", ["30"]);
    try {
      fs.writeFileSync(`${out}.lock`, String(holder.pid));
      const r = await kvzapCalibrate(models.stories, "--kind", "linear", "--out", out, ...quick, "--prompts", "4");
      expect(r).toMatchObject({ code: 1, message: `${out} is being written by another kvzap (pid ${holder.pid}); wait for it to finish` });
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      holder.kill();
    }
    await new Promise((resolve) => holder.on("exit", resolve));
    const { claimProfileDir } = await import("../profiles/claim.js");
    const claim = await claimProfileDir(out, { force: false });
    expect(fs.readFileSync(`${out}.lock`, "utf8")).toBe(String(process.pid));
    await claim.release();
    expect(fs.existsSync(`${out}.lock`)).toBe(false);
  });

  it("an --out that is some other folder is refused before any work", async () => {
    const out = path.join(tmp, "occupied");
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, "notes.txt"), "mine");
    const r = await kvzapCalibrate(models.stories, "--kind", "linear", "--out", out, ...quick);
    expect(r).toMatchObject({ code: 1, message: expect.stringMatching(/is not a kvzap profile folder/) });
  });
});
