import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SETTING_KEYS, SETTINGS, checkSettingValue, defaultCacheDir, findSettingKey, isRemoteModelSpec, parseSettingValue } from "./schema.js";

afterEach(() => {
  vi.unstubAllEnvs();
});

describe("parseSettingValue", () => {
  it("parses integers and checks their lower bounds", () => {
    expect(parseSettingValue("contextSize", "32768")).toEqual({ ok: true, value: 32768 });
    expect(parseSettingValue("contextSize", " 16 ")).toEqual({ ok: true, value: 16 });
    expect(parseSettingValue("gpuLayers", "-1")).toEqual({ ok: true, value: -1 });
    expect(parseSettingValue("threads", "1")).toEqual({ ok: true, value: 1 });
    expect(parseSettingValue("maxTokens", "1")).toEqual({ ok: true, value: 1 });

    expect(parseSettingValue("contextSize", "15")).toEqual({ ok: false, problem: "must be a whole number ≥ 16, got '15'" });
    expect(parseSettingValue("gpuLayers", "-2")).toEqual({ ok: false, problem: "must be a whole number ≥ -1 (-1 = all layers), got '-2'" });
    expect(parseSettingValue("threads", "0")).toEqual({ ok: false, problem: "must be a whole number ≥ 1, got '0'" });
    expect(parseSettingValue("maxTokens", "0")).toEqual({ ok: false, problem: "must be a whole number ≥ 1, got '0'" });
  });

  it("rejects what is not a plain whole number, and values too large for llama.cpp", () => {
    for (const raw of ["4k", "12.5", "1e4", "", " ", "0x100", "abc", "NaN"]) {
      const r = parseSettingValue("contextSize", raw);
      expect(r.ok, raw).toBe(false);
    }
    expect(parseSettingValue("contextSize", "99999999999")).toEqual({ ok: false, problem: "must be at most 2147483647, got '99999999999'" });
    expect(parseSettingValue("threads", "5000")).toEqual({ ok: false, problem: "must be at most 1024, got '5000'" });
  });

  it("accepts model URIs as they are and makes local paths absolute", () => {
    expect(parseSettingValue("model", "hf:unsloth/Qwen3-8B-GGUF:Q4_K_M")).toEqual({ ok: true, value: "hf:unsloth/Qwen3-8B-GGUF:Q4_K_M" });
    expect(parseSettingValue("model", "hf:user/repo")).toEqual({ ok: true, value: "hf:user/repo" });
    expect(parseSettingValue("model", "hf:user/repo/model-Q8_0.gguf").ok).toBe(true);
    expect(parseSettingValue("model", "https://example.com/m.gguf")).toEqual({ ok: true, value: "https://example.com/m.gguf" });
    // every hub form the downloader takes is a model URI here too, not a relative path
    for (const uri of ["hf://user/repo", "huggingface:user/repo:Q4_0", "hf.co/user/repo", "huggingface.co/user/repo/m.gguf"]) {
      expect(parseSettingValue("model", uri)).toEqual({ ok: true, value: uri });
      expect(isRemoteModelSpec(uri)).toBe(true);
    }
    expect(isRemoteModelSpec("models/hf.gguf")).toBe(false);
    expect(parseSettingValue("model", "models/m.gguf", "/data")).toEqual({ ok: true, value: path.resolve("/data", "models/m.gguf") });
    expect(parseSettingValue("model", "~/m.gguf")).toEqual({ ok: true, value: path.join(os.homedir(), "m.gguf") });
    expect(parseSettingValue("cacheDir", "~")).toEqual({ ok: true, value: os.homedir() });
  });

  it("rejects empty values and malformed hf: URIs with the rule", () => {
    const rule = "must be a GGUF file path, hf:user/repo:quant or an http(s) URL";
    expect(parseSettingValue("model", "")).toEqual({ ok: false, problem: `${rule}, got ''` });
    expect(parseSettingValue("model", "hf:justrepo")).toEqual({ ok: false, problem: `${rule}, got 'hf:justrepo'` });
    expect(parseSettingValue("model", "hf:")).toEqual({ ok: false, problem: `${rule}, got 'hf:'` });
    expect(parseSettingValue("cacheDir", "  ")).toEqual({ ok: false, problem: "must be a directory path, got '  '" });
  });
});

describe("checkSettingValue", () => {
  it("checks typed values as JSON would hold them", () => {
    expect(checkSettingValue("contextSize", 4096)).toEqual({ ok: true, value: 4096 });
    expect(checkSettingValue("contextSize", "4096")).toEqual({ ok: false, problem: 'must be a whole number ≥ 16, got "4096"' });
    expect(checkSettingValue("contextSize", 4096.5).ok).toBe(false);
    expect(checkSettingValue("threads", null)).toEqual({ ok: false, problem: "must be a whole number ≥ 1, got null" });
    expect(checkSettingValue("model", 42).ok).toBe(false);
    expect(checkSettingValue("model", undefined).ok).toBe(false);
  });
});

describe("keys", () => {
  it("finds a key from camelCase, kebab-case or snake_case", () => {
    expect(findSettingKey("contextSize")).toBe("contextSize");
    expect(findSettingKey("context-size")).toBe("contextSize");
    expect(findSettingKey("GPU_LAYERS")).toBe("gpuLayers");
    expect(findSettingKey("max-tokens")).toBe("maxTokens");
    expect(findSettingKey("ctx")).toBeUndefined();
  });

  it("names one KVZAP_ variable and one flag per key", () => {
    expect(SETTING_KEYS.map((k) => SETTINGS[k].env)).toEqual([
      "KVZAP_MODEL",
      "KVZAP_CONTEXT_SIZE",
      "KVZAP_GPU_LAYERS",
      "KVZAP_THREADS",
      "KVZAP_CACHE_DIR",
      "KVZAP_MAX_TOKENS",
    ]);
    expect(SETTING_KEYS.map((k) => SETTINGS[k].flag)).toEqual(["model", "ctx", "gpu-layers", "threads", "cache-dir", "max-tokens"]);
  });

  it("has defaults that pass their own rules", () => {
    for (const k of SETTING_KEYS) {
      const d = SETTINGS[k].default();
      if (d !== undefined) expect(checkSettingValue(k, d).ok, k).toBe(true);
    }
  });
});

describe("defaultCacheDir", () => {
  it("honors an absolute XDG_CACHE_HOME and falls back to ~/.cache", () => {
    expect(defaultCacheDir({ XDG_CACHE_HOME: "/xdg/cache" })).toBe(path.join("/xdg/cache", "kvzap"));
    expect(defaultCacheDir({})).toBe(path.join(os.homedir(), ".cache", "kvzap"));
    expect(defaultCacheDir({ XDG_CACHE_HOME: "" })).toBe(path.join(os.homedir(), ".cache", "kvzap"));
    expect(defaultCacheDir({ XDG_CACHE_HOME: "relative/cache" })).toBe(path.join(os.homedir(), ".cache", "kvzap"));
  });

  it("is what the cacheDir default reads from the environment", () => {
    vi.stubEnv("XDG_CACHE_HOME", "/elsewhere");
    expect(SETTINGS.cacheDir.default()).toBe(path.join("/elsewhere", "kvzap"));
  });
});
