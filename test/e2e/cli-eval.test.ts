// kvzap eval through the built CLI on the fixture models: a small task run with its files and resumption, a tasks
// file, the text measure (KVzap against random eviction at matched compression), and bad input.
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { corpora, expectCleanFailure, kvzap, models } from "../helpers/cli.js";

describe("kvzap eval", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-eval-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("runs tasks under every policy at a matched compression, writes JSON, CSV and plots, and resumes", async () => {
    const out = path.join(dir, "tasks");
    const args = [
      "eval",
      models.testbed,
      "--tasks",
      "niah_single,cwe",
      "--lengths",
      "320",
      "--samples",
      "1",
      "--policies",
      "full,kvzap,window,random,oracle",
      "--targets",
      "2",
      "--window",
      "32",
      "--prefill",
      "product,paper",
      "--batch",
      "64",
      "--out",
      out,
    ];
    const r = await kvzap(args, { timeoutMs: 240_000 });
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/niah_single\s+320\s+paper\s+full/);
    expect(r.stdout).toMatch(/accuracy \(%\), product prefill against compression/);
    const json = JSON.parse(await readFile(path.join(out, "eval.json"), "utf8"));
    expect(json.tasks).toHaveLength(2);
    for (const t of json.tasks) expect(t.promptSha256).toMatch(/^[0-9a-f]{64}$/);
    // 2 tasks x 2 prefill modes x (full + 4 policies at one target)
    expect(json.rows).toHaveLength(2 * 2 * 5);
    for (const row of json.rows.filter((x: { policy: string }) => x.policy !== "full")) {
      // the baselines hold what KVzap held, to a few pairs per head (random: up to a partial group of 64 positions)
      const kv = json.rows.find((x: { policy: string; id: string; mode: string }) => x.policy === "kvzap" && x.id === row.id && x.mode === row.mode);
      expect(Math.abs(row.pairsPerHead - kv.pairsPerHead)).toBeLessThanOrEqual(4);
      expect(row.compression).toBeGreaterThan(1.8);
      expect(row.compression).toBeLessThan(2.2);
    }
    const files = await readdir(out);
    expect(files).toEqual(expect.arrayContaining(["eval.csv", "rows.jsonl", "tasks.jsonl", "accuracy-product.svg", "accuracy-paper.svg"]));
    expect(await readFile(path.join(out, "accuracy-paper.svg"), "utf8")).toMatch(/^<svg[\s\S]*polyline[\s\S]*<\/svg>\n$/);
    const csv = (await readFile(path.join(out, "eval.csv"), "utf8")).trim().split("\n");
    expect(csv[0]).toMatch(/^task,length,mode,policy,target/);
    expect(csv).toHaveLength(1 + 2 * 2 * 5);
    // a second run finds every row made and makes none
    const lines = (await readFile(path.join(out, "rows.jsonl"), "utf8")).trim().split("\n").length;
    const again = await kvzap([...args, "--json"], { timeoutMs: 120_000 });
    expect(again.code).toBe(0);
    expect((await readFile(path.join(out, "rows.jsonl"), "utf8")).trim().split("\n").length).toBe(lines);
    expect(JSON.parse(again.stdout).summary).toHaveLength(2 * 2 * 5);
    // the tasks it wrote run again as a tasks file, to the same prompts
    const fromFile = await kvzap(
      [
        "eval",
        models.testbed,
        "--tasks-file",
        path.join(out, "tasks.jsonl"),
        "--policies",
        "full",
        "--prefill",
        "paper",
        "--out",
        path.join(dir, "file"),
        "--json",
      ],
      { timeoutMs: 120_000 },
    );
    expect(fromFile.code).toBe(0);
    const j2 = JSON.parse(await readFile(path.join(dir, "file", "eval.json"), "utf8"));
    expect(j2.tasks.map((t: { promptSha256: string }) => t.promptSha256)).toEqual(json.tasks.map((t: { promptSha256: string }) => t.promptSha256));
  });

  it("on held-out text, KVzap stays closer to the full cache than random eviction at the same compression", async () => {
    const out = path.join(dir, "text");
    const r = await kvzap(
      [
        "eval",
        models.testbed,
        "--text",
        `${corpora}/gutenberg-sherlock-holmes.txt`,
        "--lengths",
        "640",
        "--continuation",
        "96",
        "--samples",
        "1",
        "--policies",
        "full,kvzap,random",
        "--targets",
        "2,3",
        "--window",
        "64",
        "--prefill",
        "paper",
        "--out",
        out,
        "--json",
      ],
      { timeoutMs: 240_000 },
    );
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.code).toBe(0);
    const summary = JSON.parse(r.stdout).summary as {
      policy: string;
      target: number | null;
      kl: number;
      top1: number;
      compression: number;
      perplexity: number;
    }[];
    const full = summary.find((s) => s.policy === "full")!;
    expect(full.kl).toBe(0);
    for (const target of [2, 3]) {
      const kv = summary.find((s) => s.policy === "kvzap" && s.target === target)!;
      const rnd = summary.find((s) => s.policy === "random" && s.target === target)!;
      expect(Math.abs(kv.compression - rnd.compression) / kv.compression).toBeLessThan(0.03);
      expect(kv.kl).toBeGreaterThan(0);
      expect(kv.kl).toBeLessThan(rnd.kl);
    }
    expect(await readdir(out)).toEqual(expect.arrayContaining(["kl-paper.svg", "top1-paper.svg", "perplexity-paper.svg"]));
  });

  it("refuses bad input with one message", async () => {
    const bad = path.join(dir, "bad.jsonl");
    await writeFile(bad, '{"id":"a","prompt":"x","answers":["1"]}\n{"id":"b","prompt":"y"}\n');
    const r1 = await kvzap(["eval", models.stories, "--tasks-file", bad, "--out", path.join(dir, "b1")]);
    expectCleanFailure(r1);
    expect(r1.stderr).toMatch(/bad\.jsonl:2: "answers"/);
    const r2 = await kvzap(["eval", models.stories, "--tasks", "niah_single,bogus", "--out", path.join(dir, "b2")]);
    expectCleanFailure(r2);
    expect(r2.stderr).toMatch(/unknown task 'bogus'/);
    const r3 = await kvzap(["eval", models.stories, "--tasks", "niah_single", "--policies", "full,lru", "--out", path.join(dir, "b3")]);
    expectCleanFailure(r3);
    expect(r3.stderr).toMatch(/unknown policy 'lru'/);
    const r4 = await kvzap(["eval", models.stories, "--tasks", "niah_single", "--lengths", "8000", "--policies", "full", "--out", path.join(dir, "b4")]);
    expectCleanFailure(r4);
    expect(r4.stderr).toMatch(/does not fit the model's/);
  });
});
