// `kvzap bench` through the built CLI on stories260K: the files and tables it writes, and its usage errors.
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanFailure, kvzap, models } from "../../test/helpers/cli.js";
import { unprofiledCopy } from "../../test/helpers/kvzap.js";
import { defaultOut, parseTaus } from "./bench.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-bench-test-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

const summaryShape = { median: expect.any(Number), min: expect.any(Number), max: expect.any(Number), all: expect.any(Array) };

describe("kvzap bench speed", () => {
  it("writes the report's JSON to --out and prints a table with every variant and the ratios", async () => {
    const out = path.join(dir, "speed.json");
    const r = await kvzap([
      "bench",
      "speed",
      models.stories,
      "--ctx",
      "256",
      "--prompt-tokens",
      "96",
      "--decode-tokens",
      "8",
      "--reps",
      "1",
      "--threads",
      "1",
      "--variants",
      "stock,kvzap,kvzap@-4,window",
      "--out",
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(await readFile(out, "utf8"));
    expect(report).toMatchObject({
      kind: "kvzap-bench-speed",
      model: { path: models.stories, layers: 5, kvHeads: 4 },
      device: { backend: expect.stringMatching(/^(cpu|cuda)$/), llamaVersion: expect.any(String), cpuThreads: expect.any(Number), devices: expect.any(Array) },
      settings: {
        contextSize: 256,
        promptTokens: 96,
        decodeTokens: 8,
        reps: 1,
        threads: 1,
        batchSize: 256,
        variants: ["stock", "kvzap", "kvzap@-4", "window"],
      },
      ratios: { prefill: summaryShape, decode: summaryShape },
    });
    expect(report.device.loadAverage.before).toHaveLength(3);
    expect(report.device.loadAverage.after).toHaveLength(3);
    expect(report.results.map((x: { variant: string }) => x.variant)).toEqual(["stock", "kvzap", "kvzap@-4", "window"]);
    for (const res of report.results) {
      expect(res).toMatchObject({
        prefillTokPerSec: summaryShape,
        decodeTokPerSec: summaryShape,
        kvBytesInUse: expect.any(Number),
        kvBytesFullEquivalent: expect.any(Number),
      });
    }
    const bytesPerToken = 5 * 4 * 8 * 2 * 2;
    // stock holds llama.cpp's buffer for the whole context; KVzap holds blocks of 16 pairs for the 104 tokens
    // (96 prompt + 8 decoded, all kept at τ = -1e9): the memory follows the tokens, not the context size
    const [stockRes, kvzapRes] = report.results;
    expect(stockRes.kvBytesInUse).toBe(256 * bytesPerToken);
    expect(kvzapRes.tau).toBe(-1e9);
    expect(kvzapRes.kvBytesFullEquivalent).toBe(104 * bytesPerToken);
    expect(kvzapRes.kvBytesInUse).toBe(Math.ceil(104 / 16) * 16 * bytesPerToken);
    for (const v of ["stock", "kvzap", "kvzap@-4", "window"]) expect(r.stdout).toMatch(new RegExp(`^${v.replace(/[@.]/g, "\\$&")}\\s`, "m"));
    expect(r.stdout).toMatch(/^kvzap \/ stock\s/m);
    expect(r.stdout).toContain(`wrote ${out}`);
  });

  it("--json prints the report on stdout, and the default file lands in the current folder", async () => {
    const cwd = await mkdtemp(path.join(dir, "cwd-"));
    const r = await kvzap(
      ["bench", "speed", models.stories, "--ctx", "128", "--prompt-tokens", "40", "--decode-tokens", "4", "--reps", "2", "--no-warmup", "--json"],
      { cwd },
    );
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    const files = await readdir(cwd);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^bench-speed-stories260K-\d{8}-\d{6}\.json$/);
    expect(JSON.parse(await readFile(path.join(cwd, files[0]), "utf8"))).toEqual(report);
    expect(report.ratios.prefill.all).toHaveLength(2);
    expect(report.settings.warmup).toBe(false);
  });

  it("a prompt that does not fit, an unknown variant or benchmark end in a usage error", async () => {
    for (const args of [
      ["bench", "speed", models.stories, "--ctx", "128", "--prompt-tokens", "125", "--decode-tokens", "8"],
      ["bench", "speed", models.stories, "--variants", "stock,turbo"],
      ["bench", "speed", models.stories, "--reps", "0"],
      ["bench", "latency", models.stories],
    ]) {
      const r = await kvzap(args);
      expectCleanFailure(r);
      expect(r.code, args.join(" ")).toBe(2);
    }
    const missing = await kvzap(["bench", "speed", path.join(dir, "nope.gguf")]);
    expectCleanFailure(missing);
    expect(missing.stderr).toMatch(/model file not found/);
  });
});

describe("kvzap bench memory", () => {
  it("reports bytes per τ with compression rising with τ (random weights flagged as such)", async () => {
    const out = path.join(dir, "memory.json");
    const r = await kvzap([
      "bench",
      "memory",
      await unprofiledCopy("stories"),
      "--ctx",
      "512",
      "--prompt-tokens",
      "300",
      "--taus",
      "-1e9,-5,-3,1e9",
      "--window",
      "64",
      "--batch",
      "64",
      "--cache-dir",
      dir,
      "--out",
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/WARNING: random surrogate weights/);
    const report = JSON.parse(await readFile(out, "utf8"));
    expect(report).toMatchObject({
      kind: "kvzap-bench-memory",
      settings: { taus: [-1e9, -5, -3, 1e9], window: 64, compareTokens: 32, profile: { source: "random" } },
    });
    expect(report.full.tokens).toHaveLength(32);
    const ratios = report.results.map((x: { compression: number }) => x.compression);
    for (let i = 1; i < ratios.length; i++) expect(ratios[i]).toBeGreaterThanOrEqual(ratios[i - 1]);
    expect(ratios[ratios.length - 1]).toBeGreaterThan(2 * ratios[0]);
    expect(report.results[0]).toMatchObject({ tau: -1e9, agreement: 1, evicted: 0, keptFraction: 1 });
    for (const x of report.results) expect(x.layers).toHaveLength(5);
    expect(r.stdout).toMatch(/^-1e9\s/m);
  });
});

describe("bench argument helpers", () => {
  it("parses τ lists and names default files after the model and the time", () => {
    expect(parseTaus("-1e9, -4,1e9")).toEqual([-1e9, -4, 1e9]);
    expect(() => parseTaus("-4,x")).toThrow(/--taus must be a number/);
    expect(defaultOut("speed", "/m/testbed-28M-v0-q8_0.gguf", new Date(2026, 0, 2, 3, 4, 5))).toBe("bench-speed-testbed-28M-v0-q8_0-20260102-030405.json");
  });
});
