// `kvzap bench sweep` through the built CLI on the testbed model (CPU build): one process per configuration, rows
// whose kept share follows the asked fraction, both KV types, and its usage errors.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanFailure, kvzap, models } from "../../test/helpers/cli.js";
import type { SweepReport } from "../bench/sweep-report.js";
import { parseDepths, parseEngines } from "./bench-sweep.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-sweep-test-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("kvzap bench sweep", () => {
  it("runs each configuration in its own process and reports rows per depth and KV type", async () => {
    const out = path.join(dir, "sweep.json");
    const r = await kvzap(
      [
        "bench",
        "sweep",
        models.testbed,
        "--engines",
        "kvzap-off,kvzap@0.25",
        "--depths",
        "2048,1024",
        "--kv-types",
        "f16,q8_0",
        "--decode-tokens",
        "4",
        "--decode-reps",
        "2",
        "--decode-warmup",
        "2",
        "--threads",
        "2",
        "--out",
        out,
      ],
      { timeoutMs: 300_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(await readFile(out, "utf8")) as SweepReport & { failures: unknown[] };
    expect(report.kind).toBe("kvzap-bench-sweep");
    expect(report.failures).toEqual([]);
    expect(report.settings.decodeWarmup).toBe(2);
    // 2 engines x 2 KV types x 2 depths, depths ascending within each process
    expect(report.rows.map((x) => `${x.engine}@${x.keep}/${x.kvType}/${x.depth}`)).toEqual([
      "kvzap-off@1/f16/1024",
      "kvzap-off@1/f16/2048",
      "kvzap@0.25/f16/1024",
      "kvzap@0.25/f16/2048",
      "kvzap-off@1/q8_0/1024",
      "kvzap-off@1/q8_0/2048",
      "kvzap@0.25/q8_0/1024",
      "kvzap@0.25/q8_0/2048",
    ]);
    for (const x of report.rows) {
      expect(x.prefillTps).toBeGreaterThan(0);
      expect(x.decodeTps).toBeGreaterThan(0);
      expect(x.decode.all).toHaveLength(2);
      // the prompt leaves room for the untimed warm-up tokens and the timed segments
      expect(x.promptTokens).toBe(x.depth - 2 - 2 * 4 - 1);
      expect(x.peakDeviceBytes).toBeNull(); // a CPU build: no driver figures
    }
    const at = (engine: string, kvType: string, depth: number) => report.rows.find((x) => x.engine === engine && x.kvType === kvType && x.depth === depth)!;
    for (const kvType of ["f16", "q8_0"]) {
      const off = at("kvzap-off", kvType, 2048);
      const kept = at("kvzap", kvType, 2048);
      // the full cache of the context against the pairs kept: a quarter outside the 128-token window, plus it
      const share = kept.kvBytesInUse / kept.kvBytesFullEquivalent;
      expect(share).toBeGreaterThan(0.25);
      expect(share).toBeLessThan(0.25 + 128 / 2048 + 0.03);
      expect(kept.kvBytesInUse).toBeLessThan(0.4 * off.kvBytes);
      // committed in 2 MiB chunks for K and for V: at this size the chunks, not the pairs, set what is held
      expect(kept.kvBytes).toBeLessThanOrEqual(Math.max(off.kvBytes / 2, 4 * 1024 ** 2));
      expect(kept.evicted).toBeGreaterThan(0);
    }
    // q8_0 rows are 34 bytes per 32 values against f16's 64: the full cache's buffer shrinks by that much
    expect(at("kvzap-off", "q8_0", 2048).kvBytes / at("kvzap-off", "f16", 2048).kvBytes).toBeCloseTo(34 / 64, 2);
    expect(report.commands).toHaveLength(5);
    expect(r.stdout).toMatch(/kvzap@0.25/);
    expect(r.stdout).toMatch(/wrote /);
    // each configuration's whole process is timed, for planning time-limited runs
    expect(`${r.stdout}${r.stderr}`).toMatch(/kvzap@0\.25 f16: its process took \d+\.\d s/);
  }, 320_000);

  it("names a missing stock addon and how to build it", async () => {
    const r = await kvzap(["bench", "sweep", models.testbed, "--engines", "stock", "--stock-addon", path.join(dir, "none.node"), "--depths", "1024"]);
    expectCleanFailure(r);
    expect(r.stderr).toMatch(/stock engine's addon is missing .*npm run build:stock/);
  });

  it("rejects bad engine and depth lists before any work", () => {
    expect(() => parseEngines("kvzap@0")).toThrow(/KEEP in \(0, 1\]/);
    expect(() => parseEngines("stock,stock")).toThrow(/twice/);
    expect(parseEngines("stock,kvzap@0.5")).toEqual([
      { engine: "stock", keep: 1 },
      { engine: "kvzap", keep: 0.5 },
    ]);
    expect(parseDepths("65536,4096,4096")).toEqual([4096, 65536]);
    expect(() => parseDepths("100")).toThrow(/depths/);
  });
});
