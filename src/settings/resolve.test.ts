import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { UsageError, UserError } from "../base/errors.js";
import { NO_MODEL_MESSAGE, requireModel, resolveAllSettings, resolveSetting } from "./resolve.js";
import { SETTINGS, SETTING_KEYS } from "./schema.js";
import { configFilePath, writeConfigValue } from "./store.js";

let tmp: string;
let configDir: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kvzap-settings-"));
  configDir = path.join(tmp, "config");
  // Never the real user config, and no KVZAP_* variable from the shell running the tests.
  vi.stubEnv("KVZAP_CONFIG_DIR", configDir);
  vi.stubEnv("XDG_CACHE_HOME", path.join(tmp, "cache"));
  for (const k of SETTING_KEYS) vi.stubEnv(SETTINGS[k].env, undefined);
});

afterEach(() => {
  vi.unstubAllEnvs();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function writeConfig(data: unknown): void {
  fs.mkdirSync(configDir, { recursive: true });
  fs.writeFileSync(path.join(configDir, "config.json"), typeof data === "string" ? data : JSON.stringify(data));
}

describe("resolveSetting precedence: flag > env > config > default", () => {
  it("walks every level for contextSize", () => {
    expect(resolveSetting("contextSize")).toEqual({ value: undefined, source: "default" });
    writeConfigValue("contextSize", 4096);
    expect(resolveSetting("contextSize")).toEqual({ value: 4096, source: "config" });
    vi.stubEnv("KVZAP_CONTEXT_SIZE", "2048");
    expect(resolveSetting("contextSize")).toEqual({ value: 2048, source: "env" });
    expect(resolveSetting("contextSize", "1024")).toEqual({ value: 1024, source: "flag" });
    expect(resolveSetting("contextSize", 512)).toEqual({ value: 512, source: "flag" });
  });

  it("walks every level for model", () => {
    expect(resolveSetting("model")).toEqual({ value: undefined, source: "default" });
    writeConfigValue("model", "/models/from-config.gguf");
    expect(resolveSetting("model")).toEqual({ value: "/models/from-config.gguf", source: "config" });
    vi.stubEnv("KVZAP_MODEL", "hf:user/repo:Q8_0");
    expect(resolveSetting("model")).toEqual({ value: "hf:user/repo:Q8_0", source: "env" });
    expect(resolveSetting("model", "/models/flag.gguf")).toEqual({ value: "/models/flag.gguf", source: "flag" });
  });

  it("walks every level for gpuLayers, including -1 from the environment", () => {
    expect(resolveSetting("gpuLayers")).toEqual({ value: -1, source: "default" });
    writeConfigValue("gpuLayers", 20);
    expect(resolveSetting("gpuLayers")).toEqual({ value: 20, source: "config" });
    vi.stubEnv("KVZAP_GPU_LAYERS", "-1");
    expect(resolveSetting("gpuLayers")).toEqual({ value: -1, source: "env" });
    expect(resolveSetting("gpuLayers", "0")).toEqual({ value: 0, source: "flag" });
  });

  it("walks every level for cacheDir, with the XDG default", () => {
    expect(resolveSetting("cacheDir")).toEqual({ value: path.join(tmp, "cache", "kvzap"), source: "default" });
    writeConfigValue("cacheDir", path.join(tmp, "c1"));
    expect(resolveSetting("cacheDir")).toEqual({ value: path.join(tmp, "c1"), source: "config" });
    vi.stubEnv("KVZAP_CACHE_DIR", path.join(tmp, "c2"));
    expect(resolveSetting("cacheDir")).toEqual({ value: path.join(tmp, "c2"), source: "env" });
    expect(resolveSetting("cacheDir", path.join(tmp, "c3"))).toEqual({ value: path.join(tmp, "c3"), source: "flag" });
  });

  it("keeps levels independent per key", () => {
    writeConfigValue("threads", 3);
    vi.stubEnv("KVZAP_MAX_TOKENS", "64");
    const all = resolveAllSettings({ contextSize: "256" });
    expect(all.threads).toEqual({ value: 3, source: "config" });
    expect(all.maxTokens).toEqual({ value: 64, source: "env" });
    expect(all.contextSize).toEqual({ value: 256, source: "flag" });
    expect(all.gpuLayers.source).toBe("default");
    expect(all.model).toEqual({ value: undefined, source: "default" });
  });

  it("treats an empty environment variable as unset", () => {
    writeConfigValue("maxTokens", 99);
    vi.stubEnv("KVZAP_MAX_TOKENS", "");
    expect(resolveSetting("maxTokens")).toEqual({ value: 99, source: "config" });
  });

  it("takes relative model paths from the environment against the working directory", () => {
    vi.stubEnv("KVZAP_MODEL", "rel/m.gguf");
    expect(resolveSetting("model").value).toBe(path.resolve("rel/m.gguf"));
  });

  it("takes relative paths written by hand in the config file against the config directory", () => {
    writeConfig({ model: "models/m.gguf", cacheDir: "~/kv-cache" });
    expect(resolveSetting("model").value).toBe(path.join(configDir, "models", "m.gguf"));
    expect(resolveSetting("cacheDir").value).toBe(path.join(os.homedir(), "kv-cache"));
  });
});

describe("resolveSetting errors", () => {
  it("names the environment variable when its value is bad", () => {
    vi.stubEnv("KVZAP_CONTEXT_SIZE", "lots");
    const err = catchError(() => resolveSetting("contextSize"));
    expect(err).toBeInstanceOf(UserError);
    expect((err as UserError).kind).toBe("input");
    expect(err.message).toBe("environment variable KVZAP_CONTEXT_SIZE must be a whole number ≥ 16, got 'lots'");

    vi.stubEnv("KVZAP_THREADS", "0");
    expect(() => resolveSetting("threads")).toThrow(/KVZAP_THREADS must be a whole number ≥ 1, got '0'/);
    vi.stubEnv("KVZAP_MODEL", "hf:nope");
    expect(() => resolveSetting("model")).toThrow(/KVZAP_MODEL must be/);
  });

  it("does not read a bad environment variable when a flag decides", () => {
    vi.stubEnv("KVZAP_CONTEXT_SIZE", "lots");
    expect(resolveSetting("contextSize", "4096")).toEqual({ value: 4096, source: "flag" });
  });

  it("names the flag when a flag's value is bad (a usage error)", () => {
    const err = catchError(() => resolveSetting("contextSize", "8"));
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe("--ctx must be a whole number ≥ 16, got '8'");
    expect(() => resolveSetting("gpuLayers", -5)).toThrow("--gpu-layers must be a whole number ≥ -1 (-1 = all layers), got -5");
    expect(() => resolveSetting("maxTokens", 1.5)).toThrow(UsageError);
  });

  it("names the file and the fix when the config file holds a bad value, and lets flags and env win over it", () => {
    writeConfig({ threads: 0, maxTokens: "many" });
    const err = catchError(() => resolveSetting("threads"));
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toBe(
      `threads in the config file ${path.join(configDir, "config.json")} must be a whole number ≥ 1, got 0; ` +
        "fix it with `kvzap config set threads VALUE` or remove it with `kvzap config unset threads`",
    );
    expect(() => resolveSetting("maxTokens")).toThrow(/maxTokens in the config file .* got "many"/);
    expect(resolveSetting("threads", "2")).toEqual({ value: 2, source: "flag" });
    vi.stubEnv("KVZAP_MAX_TOKENS", "10");
    expect(resolveSetting("maxTokens")).toEqual({ value: 10, source: "env" });
    // Keys that are fine still come from the file.
    expect(resolveSetting("contextSize").source).toBe("default");
  });

  it("reports a config file that is not JSON, or not an object, and leaves it alone", () => {
    writeConfig("{ contextSize: 4096");
    const err = catchError(() => resolveSetting("contextSize"));
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/^cannot use the config file .*config\.json: it is not valid JSON \(.*\); fix it or delete it$/);
    expect(() => writeConfigValue("contextSize", 1024)).toThrow(/not valid JSON/);
    expect(fs.readFileSync(configFilePath(), "utf8")).toBe("{ contextSize: 4096");

    writeConfig("[1, 2]");
    expect(() => resolveSetting("contextSize")).toThrow(/it is not a JSON object/);
  });

  it("treats an empty config file as no settings", () => {
    writeConfig("");
    expect(resolveSetting("contextSize")).toEqual({ value: undefined, source: "default" });
  });
});

describe("requireModel", () => {
  it("returns the model from the flag, the environment or the config file", () => {
    writeConfigValue("model", "hf:a/config-model");
    expect(requireModel()).toBe("hf:a/config-model");
    vi.stubEnv("KVZAP_MODEL", "hf:a/env-model:Q4_K_M");
    expect(requireModel()).toBe("hf:a/env-model:Q4_K_M");
    expect(requireModel("/m/flag.gguf")).toBe("/m/flag.gguf");
  });

  it("explains every way to give a model when there is none", () => {
    const err = catchError(() => requireModel());
    // No model is a missing argument: a usage error (exit 2), as the README gives for usage errors.
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toBe(NO_MODEL_MESSAGE);
    expect(err.message).toBe("no model given: pass --model PATH or --model hf:user/repo:quant, set KVZAP_MODEL, or run `kvzap config set model PATH`");
  });
});

function catchError(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error");
}
