import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { SETTINGS, SETTING_KEYS } from "../settings/index.js";
import { main } from "./config.js";
import { UsageError, UserError } from "../base/errors.js";
import { exitCodeOf } from "./exit-codes.js";
import { captureCommands } from "../../test/helpers/in-process.js";

let tmp: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kvzap-config-cli-"));
});
const io = captureCommands(() => tmp);
beforeEach(() => vi.stubEnv("XDG_CACHE_HOME", path.join(tmp, "cache")));
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** What the dispatcher in main.ts does with a command: the exit code, thrown errors mapped to theirs. */
async function kvzapConfig(...argv: string[]): Promise<{ code: number; error?: Error }> {
  try {
    return { code: await main(argv) };
  } catch (e) {
    if (e instanceof UsageError || e instanceof UserError) return { code: exitCodeOf(e), error: e };
    throw e;
  }
}

const configFile = () => path.join(tmp, "config.json");

describe("kvzap config", () => {
  it("set then get: prints the saved value, stores integers as numbers", async () => {
    expect(await kvzapConfig("set", "contextSize", "16384")).toEqual({ code: 0 });
    expect(io.stdout).toBe("contextSize = 16384\n");
    expect(JSON.parse(fs.readFileSync(configFile(), "utf8"))).toEqual({ contextSize: 16384 });
    io.stdout = "";
    expect(await kvzapConfig("get", "contextSize")).toEqual({ code: 0 });
    expect(io.stdout).toBe("16384\n");
    expect(io.stderr).toBe("");
  });

  it("takes a negative number as a value, not as a flag", async () => {
    expect(await kvzapConfig("set", "gpuLayers", "-1")).toEqual({ code: 0 });
    expect(io.stdout).toBe("gpuLayers = -1\n");
    const r = await kvzapConfig("set", "gpu-layers", "-2");
    expect(r.code).toBe(2);
    expect(r.error?.message).toBe("gpuLayers must be a whole number ≥ -1 (-1 = all layers), got '-2'");
  });

  it("get prints the default when nothing is saved, and --json gives the source", async () => {
    expect(await kvzapConfig("get", "max-tokens")).toEqual({ code: 0 });
    expect(io.stdout).toBe("1024\n");
    io.stdout = "";
    vi.stubEnv("KVZAP_MAX_TOKENS", "77");
    expect(await kvzapConfig("get", "maxTokens", "--json")).toEqual({ code: 0 });
    expect(JSON.parse(io.stdout)).toEqual({ key: "maxTokens", value: 77, source: "env" });
  });

  it("get of an unset model exits 1 (nothing to print)", async () => {
    const r = await kvzapConfig("get", "model");
    expect(r.code).toBe(1);
    expect(r.error?.message).toBe("model is not set");
    expect(io.stdout).toBe("");
  });

  it("list shows every key with value and source", async () => {
    await kvzapConfig("set", "model", "hf:unsloth/Qwen3-8B-GGUF:Q4_K_M");
    vi.stubEnv("KVZAP_THREADS", "3");
    io.stdout = "";
    expect(await kvzapConfig("list")).toEqual({ code: 0 });
    const lines = io.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(1 + SETTING_KEYS.length);
    expect(lines[0]).toMatch(/^KEY\s+VALUE\s+SOURCE\s+VALID$/);
    const cells = lines.map((l) => l.split(/ {2,}/).slice(0, 3));
    expect(cells).toEqual([
      ["KEY", "VALUE", "SOURCE"],
      ["model", "hf:unsloth/Qwen3-8B-GGUF:Q4_K_M", "config"],
      ["contextSize", "(the model's training context; with --kv full, at most 8192)", "default"],
      ["gpuLayers", "-1", "default"],
      ["threads", "3", "env KVZAP_THREADS"],
      ["cacheDir", path.join(tmp, "cache", "kvzap"), "default"],
      ["maxTokens", "1024", "default"],
    ]);
    // The valid values of each key, from the settings schema.
    expect(lines[2]).toMatch(/a whole number ≥ 16$/);
    // Columns line up.
    const valueColumn = lines[0].indexOf("VALUE");
    lines.forEach((l, i) => expect(l.indexOf(cells[i][1], cells[i][0].length)).toBe(valueColumn));
  });

  it("list flags a bad value in the config file or environment and still lists the rest", async () => {
    await kvzapConfig("set", "threads", "6");
    fs.writeFileSync(path.join(tmp, "config.json"), JSON.stringify({ threads: 6, contextSize: "big" }));
    vi.stubEnv("KVZAP_MAX_TOKENS", "-5");
    io.stdout = "";
    io.stderr = "";
    expect(await kvzapConfig("list")).toEqual({ code: 0 });
    const rows = Object.fromEntries(
      io.stdout
        .trimEnd()
        .split("\n")
        .map((l) => [l.split(/ {2,}/)[0], l]),
    );
    expect(rows.threads).toMatch(/^threads\s+6\s+config/);
    expect(rows.contextSize).toMatch(/✗ .*contextSize.*big/);
    expect(rows.maxTokens).toMatch(/✗ .*KVZAP_MAX_TOKENS/);
    expect(io.stderr).toMatch(/fix contextSize, maxTokens/);
  });

  it("list --json is an object keyed by setting, null for no model", async () => {
    await kvzapConfig("set", "threads", "6");
    io.stdout = "";
    expect(await kvzapConfig("list", "--json")).toEqual({ code: 0 });
    const data = JSON.parse(io.stdout);
    expect(Object.keys(data)).toEqual([...SETTING_KEYS]);
    expect(data.model).toMatchObject({ value: null, source: "default" });
    expect(data.threads).toEqual({ value: 6, source: "config", rule: "a whole number ≥ 1" });
    expect(data.cacheDir).toMatchObject({ value: path.join(tmp, "cache", "kvzap"), source: "default" });
  });

  it("unset removes the key and reports what is in effect", async () => {
    await kvzapConfig("set", "threads", "6");
    io.stdout = "";
    expect(await kvzapConfig("unset", "threads")).toEqual({ code: 0 });
    expect(io.stdout).toMatch(/^threads unset; now \d+ \(default\)\n$/);
    expect(JSON.parse(fs.readFileSync(configFile(), "utf8"))).toEqual({});
    io.stdout = "";
    expect(await kvzapConfig("unset", "model")).toEqual({ code: 0 });
    expect(io.stdout).toBe("model was not set in the config file; it is (not set) (default)\n");
  });

  it("path prints the config file, which KVZAP_CONFIG_DIR moves", async () => {
    expect(await kvzapConfig("path")).toEqual({ code: 0 });
    expect(io.stdout).toBe(configFile() + "\n");
  });

  it("notes on stderr when the environment overrides a value just saved", async () => {
    vi.stubEnv("KVZAP_CONTEXT_SIZE", "1024");
    expect(await kvzapConfig("set", "contextSize", "4096")).toEqual({ code: 0 });
    expect(io.stderr).toBe("note: KVZAP_CONTEXT_SIZE is set in the environment and overrides this value\n");
  });

  it("--help prints the keys with their variables, exit 0", async () => {
    expect(await kvzapConfig("--help")).toEqual({ code: 0 });
    expect(io.stdout).toMatch(
      /^usage: kvzap config get KEY \[--json\]\n +kvzap config set KEY VALUE\n +kvzap config unset KEY\n +kvzap config list \[--json\]\n +kvzap config path\n/,
    );
    for (const k of SETTING_KEYS) expect(io.stdout).toContain(SETTINGS[k].env);
  });

  it.each([
    [[], "a subcommand is required: get, set, unset, list, path"],
    [["frob"], "unknown subcommand 'frob'; use one of get, set, unset, list, path"],
    [["get", "ctx"], "unknown key 'ctx'; valid keys: model, contextSize, gpuLayers, threads, cacheDir, maxTokens"],
    [["set", "bogus", "1"], "unknown key 'bogus'; valid keys: model, contextSize, gpuLayers, threads, cacheDir, maxTokens"],
    [["set", "contextSize", "8"], "contextSize must be a whole number ≥ 16, got '8'"],
    [["set", "threads", "two"], "threads must be a whole number ≥ 1, got 'two'"],
    [["set", "maxTokens", "0"], "maxTokens must be a whole number ≥ 1, got '0'"],
    [["set", "model", "hf:nouser"], "model must be a GGUF file path, hf:user/repo:quant or an http(s) URL, got 'hf:nouser'"],
    [["set", "model"], "set takes KEY VALUE, got 'model'"],
    [["get"], "get takes KEY, got none"],
    [["list", "extra"], "list takes no arguments, got 'extra'"],
    [["path", "--json"], "--json applies to get and list, not path"],
    [["list", "--verbose"], "unknown option --verbose"],
  ])("usage error, exit 2: config %j", async (argv, message) => {
    const r = await kvzapConfig(...argv);
    expect(r.code).toBe(2);
    expect(r.error).toBeInstanceOf(UsageError);
    expect(r.error?.message).toBe(message);
    expect(io.stdout).toBe("");
    expect(fs.existsSync(configFile())).toBe(false);
  });

  it("a bad value in the config file is named by list (which goes on) and by get (exit 1); unset repairs it", async () => {
    fs.writeFileSync(configFile(), JSON.stringify({ threads: -4 }));
    const r = await kvzapConfig("list");
    expect(r.code).toBe(0);
    expect(io.stdout).toContain(`threads in the config file ${configFile()} must be a whole number ≥ 1, got -4`);
    const g = await kvzapConfig("get", "threads");
    expect(g.code).toBe(1);
    expect(g.error?.message).toContain(`threads in the config file ${configFile()} must be a whole number ≥ 1, got -4`);
    expect(await kvzapConfig("unset", "threads")).toEqual({ code: 0 });
    expect(await kvzapConfig("list")).toEqual({ code: 0 });

    fs.writeFileSync(configFile(), "{oops");
    const bad = await kvzapConfig("set", "threads", "2");
    expect(bad.code).toBe(1);
    expect(bad.error?.message).toMatch(/^cannot use the config file .*: it is not valid JSON/);
    expect(fs.readFileSync(configFile(), "utf8")).toBe("{oops");
  });

  it("a bad environment variable is a user error (exit 1) naming it", async () => {
    vi.stubEnv("KVZAP_GPU_LAYERS", "most");
    const r = await kvzapConfig("get", "gpuLayers");
    expect(r.code).toBe(1);
    expect(r.error?.message).toBe("environment variable KVZAP_GPU_LAYERS must be a whole number ≥ -1 (-1 = all layers), got 'most'");
  });
});
