import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Conf from "conf";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { SETTINGS, SETTING_KEYS } from "./schema.js";
import { configDir, configFilePath, deleteConfigValue, readConfigFile, readConfigValue, writeConfigValue } from "./store.js";

let tmp: string;
let dir: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kvzap-store-"));
  dir = path.join(tmp, "nested", "config");
  vi.stubEnv("KVZAP_CONFIG_DIR", dir);
  for (const k of SETTING_KEYS) vi.stubEnv(SETTINGS[k].env, undefined);
});

afterEach(() => {
  vi.unstubAllEnvs();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("config file location", () => {
  it("is $KVZAP_CONFIG_DIR/config.json when that is set", () => {
    expect(configFilePath()).toBe(path.join(dir, "config.json"));
  });

  it.runIf(process.platform === "linux")("otherwise is where conf puts projectName kvzap (XDG_CONFIG_HOME honored)", () => {
    const xdg = path.join(tmp, "xdg");
    vi.stubEnv("KVZAP_CONFIG_DIR", undefined);
    vi.stubEnv("XDG_CONFIG_HOME", xdg);
    expect(configDir()).toBe(path.join(xdg, "kvzap"));
    // conf itself, without our cwd, lands on the same file.
    const conf = new Conf({ projectName: "kvzap", projectSuffix: "" });
    expect(configFilePath()).toBe(conf.path);
    expect(configFilePath()).toBe(path.join(xdg, "kvzap", "config.json"));
  });
});

describe("reading and writing", () => {
  it("reads nothing and creates nothing when there is no file", () => {
    expect(readConfigFile()).toEqual({});
    expect(readConfigValue("contextSize")).toBeUndefined();
    expect(deleteConfigValue("contextSize")).toBe(false);
    expect(fs.existsSync(dir)).toBe(false);
  });

  it("writes JSON through conf, creating the directory, and keeps other keys", () => {
    expect(writeConfigValue("contextSize", 4096)).toBe(path.join(dir, "config.json"));
    writeConfigValue("model", "hf:user/repo:Q4_K_M");
    expect(JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"))).toEqual({ contextSize: 4096, model: "hf:user/repo:Q4_K_M" });
    expect(readConfigValue("contextSize")).toBe(4096);
    expect(readConfigValue("model")).toBe("hf:user/repo:Q4_K_M");

    expect(deleteConfigValue("contextSize")).toBe(true);
    expect(deleteConfigValue("contextSize")).toBe(false);
    expect(readConfigFile()).toEqual({ model: "hf:user/repo:Q4_K_M" });
  });

  it("refuses to write a value that breaks the schema", () => {
    expect(() => writeConfigValue("contextSize", 3)).toThrow("contextSize must be a whole number ≥ 16, got 3");
    expect(fs.existsSync(path.join(dir, "config.json"))).toBe(false);
  });

  it("keeps keys it does not know (written by a newer kvzap) and does not use them", () => {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({ futureKey: true, "context.size": 1 }));
    writeConfigValue("threads", 4);
    expect(readConfigFile()).toEqual({ futureKey: true, "context.size": 1, threads: 4 });
  });
});
