// Every command behaves the same way where the README says they do (issue 11, "Consistency"): usage errors exit 2,
// `help CMD` is `CMD --help`, the KV flags are listed where accepted, one name for the input-text flag, `-` reads
// stdin, one unit for sizes, and URL schemes we cannot download from are named.
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { formatBytes } from "../../src/base/format.js";
import { BENCH_MEMORY, BENCH_SPEED } from "../../src/cli/bench.js";
import { CALIBRATE } from "../../src/cli/calibrate.js";
import { CHAT } from "../../src/cli/chat.js";
import { INFO } from "../../src/cli/info.js";
import { parseBudget } from "../../src/cli/kv-args.js";
import { RUN } from "../../src/cli/run.js";
import { SUMMARIZE } from "../../src/cli/summarize.js";
import { expectCleanFailure, kvzap, models } from "../helpers/cli.js";

const COMMANDS = ["chat", "info", "run", "calibrate", "bench", "profile", "summarize", "config", "eval"];
const KV_FLAGS = ["--kv", "--profile", "--tau", "--window", "--kv-decoding", "--kv-budget", "--kv-block"];

describe("usage errors exit 2, as the README says", () => {
  const noModel = { KVZAP_MODEL: "" };
  it.each([
    ["run", ["run", "-p", "hi"]],
    ["info", ["info"]],
    ["chat --prompt", ["chat", "--prompt", "hi"]],
    ["summarize", ["summarize", "x.txt", "--out", "o"]],
    ["calibrate", ["calibrate", "--kind", "linear", "--out", "o"]],
    ["bench speed", ["bench", "speed"]],
  ])("%s without a model", async (_name, args) => {
    const r = await kvzap(args, { env: noModel });
    expectCleanFailure(r);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no model given: pass --model PATH/);
  });

  it.each([
    ["summarize without PATHS", ["summarize", "--out", "o", "--model", models.stories]],
    ["calibrate without --kind", ["calibrate", models.stories, "--out", "o"]],
    ["profile show without PATH", ["profile", "show"]],
    ["config set without VALUE", ["config", "set", "threads"]],
    ["run without a prompt", ["run", models.stories]],
  ])("%s", async (_name, args) => {
    const r = await kvzap(args);
    expectCleanFailure(r);
    expect(r.code).toBe(2);
  });
});

describe("help", () => {
  it.each(COMMANDS)("kvzap help %s prints what --help prints", async (name) => {
    const a = await kvzap(["help", name]);
    const b = await kvzap([name, "--help"]);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout).toMatch(new RegExp(`^usage: kvzap ${name} `));
  });

  it("kvzap help of an unknown command is the unknown-command error", async () => {
    const r = await kvzap(["help", "nosuch"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^kvzap: unknown command 'nosuch'/);
  });

  it.each([
    ["chat", CHAT],
    ["run", RUN],
    ["summarize", SUMMARIZE],
  ])("%s --help lists every KV flag it accepts", async (name, command) => {
    const r = await kvzap([name, "--help"]);
    for (const flag of KV_FLAGS) {
      expect(r.stdout).toContain(`${flag} `);
      expect(Object.keys(command.options)).toContain(flag.slice(2));
    }
  });
});

describe("one name for a flag across commands", () => {
  it("the text a command reads from a file is --file (-f) everywhere, never --text", () => {
    for (const command of [RUN, BENCH_SPEED, BENCH_MEMORY]) {
      expect(command.options.file).toMatchObject({ short: "f" });
      expect(command.options).not.toHaveProperty("text");
    }
    for (const command of [CHAT, SUMMARIZE, CALIBRATE, INFO]) expect(command.options).not.toHaveProperty("text");
  });

  it("bench takes --file, and --text is an unknown option", async () => {
    const r = await kvzap(["bench", "speed", models.stories, "--text", "x.txt"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option --text/);
  });
});

describe("info", () => {
  it("takes the configured model, and --model, as every other command does", async () => {
    const byEnv = await kvzap(["info", "--json"], { env: { KVZAP_MODEL: models.stories } });
    const byFlag = await kvzap(["info", "--model", models.stories, "--json"]);
    const byArg = await kvzap(["info", models.stories, "--json"]);
    expect(byArg.code).toBe(0);
    expect(byEnv).toMatchObject({ code: 0, stdout: byArg.stdout });
    expect(byFlag).toMatchObject({ code: 0, stdout: byArg.stdout });
    expect(JSON.parse(byArg.stdout)).toMatchObject({ layers: 5, kvHeads: 4 });
  });
});

describe("run -", () => {
  it("reads the prompt from stdin, with --prompt - and with --file -", async () => {
    const common = [models.stories, "-n", "8", "--temp", "0", "--json", "--kv", "full"];
    const direct = await kvzap(["run", ...common, "--prompt", "Once upon a time"]);
    const piped = await kvzap(["run", ...common, "--prompt", "-"], { input: "Once upon a time" });
    const file = await kvzap(["run", ...common, "--file", "-"], { input: "Once upon a time" });
    expect(direct.code).toBe(0);
    const tokens = JSON.parse(direct.stdout).tokens;
    expect(tokens).toHaveLength(8);
    expect(JSON.parse(piped.stdout).tokens).toEqual(tokens);
    expect(JSON.parse(file.stdout).tokens).toEqual(tokens);
  });
});

describe("sizes", () => {
  it("are binary everywhere: the budget flag's M and G are MiB and GiB, as the tables print them", () => {
    expect(parseBudget("512M")).toEqual({ bytes: 512 * 2 ** 20 });
    expect(parseBudget("2G")).toEqual({ bytes: 2 * 2 ** 30 });
    expect(parseBudget("1.5MiB")).toEqual({ bytes: 1.5 * 2 ** 20 });
    expect(formatBytes(512 * 2 ** 20)).toBe("512 MiB");
    expect(formatBytes(1536)).toBe("1.50 KiB");
  });
});

describe("URL schemes", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "kvzap-schemes-"));
  writeFileSync(path.join(dir, "p.txt"), "hi");
  it.each([
    ["run", ["run", "ftp://example.com/m.gguf", "-p", "hi"]],
    ["info", ["info", "ftp://example.com/m.gguf"]],
    ["run --model s3://", ["run", "--model", "s3://bucket/m.gguf", "-p", "hi"]],
    ["config set model", ["config", "set", "model", "file:///tmp/m.gguf"]],
  ])("%s: unsupported URL scheme, not 'file not found'", async (_name, args) => {
    const r = await kvzap(args, { cwd: dir });
    expectCleanFailure(r);
    expect(r.stderr).toMatch(/unsupported URL scheme (ftp|s3|file):\/\//);
  });
});
