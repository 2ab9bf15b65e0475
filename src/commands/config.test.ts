import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { UsageError } from "../base/errors.js";
import { SETTINGS, SETTING_KEYS } from "../settings/index.js";
import { configPath, getConfig, listConfig, setConfig, settingKey, unsetConfig } from "./config.js";

let tmp: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kvzap-config-cmd-"));
  vi.stubEnv("KVZAP_CONFIG_DIR", tmp);
  vi.stubEnv("XDG_CACHE_HOME", path.join(tmp, "cache"));
  for (const k of SETTING_KEYS) vi.stubEnv(SETTINGS[k].env, undefined);
});

afterEach(() => {
  vi.unstubAllEnvs();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("config commands", () => {
  it("sets integers as numbers and reads them back as in effect", async () => {
    const r = await setConfig("context-size", "32768");
    expect(r).toEqual({ key: "contextSize", value: 32768, path: path.join(tmp, "config.json") });
    expect(JSON.parse(fs.readFileSync(r.path, "utf8"))).toEqual({ contextSize: 32768 });
    expect(await getConfig("contextSize")).toMatchObject({ key: "contextSize", env: "KVZAP_CONTEXT_SIZE", value: 32768, source: "config" });
  });

  it("flags an environment variable that overrides what was saved, and a model path that does not exist", async () => {
    vi.stubEnv("KVZAP_THREADS", "2");
    const r = await setConfig("threads", "8");
    expect(r.overriddenBy).toBe("KVZAP_THREADS");
    expect((await getConfig("threads")).source).toBe("env");

    const missing = path.join(tmp, "missing.gguf");
    expect((await setConfig("model", missing)).missingPath).toBe(missing);
    fs.writeFileSync(path.join(tmp, "m.gguf"), "");
    expect((await setConfig("model", path.join(tmp, "m.gguf"))).missingPath).toBeUndefined();
    expect((await setConfig("model", "hf:user/repo:Q4_K_M")).missingPath).toBeUndefined();
  });

  it("refuses unknown keys and bad values as usage errors", async () => {
    await expect(setConfig("ctx", "4096")).rejects.toThrow(
      new UsageError("unknown key 'ctx'; valid keys: model, contextSize, gpuLayers, threads, cacheDir, maxTokens"),
    );
    await expect(setConfig("gpuLayers", "all")).rejects.toThrow(new UsageError("gpuLayers must be a whole number ≥ -1 (-1 = all layers), got 'all'"));
    await expect(getConfig("nope")).rejects.toBeInstanceOf(UsageError);
    await expect(unsetConfig("nope")).rejects.toBeInstanceOf(UsageError);
    expect(() => settingKey("")).toThrow(UsageError);
    expect(fs.existsSync(path.join(tmp, "config.json"))).toBe(false);
  });

  it("unsets a key and says what is in effect afterwards", async () => {
    await setConfig("maxTokens", "100");
    const r = await unsetConfig("maxTokens");
    expect(r.removed).toBe(true);
    expect(r.now).toMatchObject({ value: 1024, source: "default" });
    expect((await unsetConfig("maxTokens")).removed).toBe(false);
  });

  it("lists every key in order with its source", async () => {
    await setConfig("gpuLayers", "-1");
    vi.stubEnv("KVZAP_MODEL", "hf:user/repo");
    const list = await listConfig();
    expect(list.map((e) => e.key)).toEqual([...SETTING_KEYS]);
    expect(list.map((e) => e.source)).toEqual(["env", "default", "config", "default", "default", "default"]);
    expect(list[0]).toMatchObject({ key: "model", env: "KVZAP_MODEL", value: "hf:user/repo", source: "env" });
    expect(list[4].value).toBe(path.join(tmp, "cache", "kvzap"));
  });

  it("gives the config file path", async () => {
    expect(await configPath()).toBe(path.join(tmp, "config.json"));
  });
});
