import os from "node:os";
import path from "node:path";

/** Every setting, in the order `kvzap config list` shows them. */
export const SETTING_KEYS = ["model", "contextSize", "gpuLayers", "threads", "cacheDir", "maxTokens"] as const;
export type SettingKey = (typeof SETTING_KEYS)[number];

export interface Settings {
  /** A local GGUF path, `hf:user/repo[:quant]` or an http(s) URL; there is no default model. */
  model: string | undefined;
  /** Unset: the model's training context (the engine's defaultContextSize). */
  contextSize: number | undefined;
  /** -1 puts every layer on the GPU. */
  gpuLayers: number;
  threads: number;
  cacheDir: string;
  maxTokens: number;
}

type Kind = "int" | "path" | "model";

export interface SettingSpec<K extends SettingKey = SettingKey> {
  key: K;
  /** The environment variable that overrides the config file. */
  env: string;
  /** The command-line flag (without `--`) that overrides everything, for commands that offer it. */
  flag: string;
  kind: Kind;
  description: string;
  /** What a valid value is, completing "must be …". */
  rule: string;
  min?: number;
  max?: number;
  default: () => Settings[K];
  /** How help texts and `config list` name the default when it is not a plain value. */
  defaultText?: string;
}

// Values go to llama.cpp as C ints.
const INT_MAX = 2_147_483_647;

export const SETTINGS: { readonly [K in SettingKey]: SettingSpec<K> } = {
  model: {
    key: "model",
    env: "KVZAP_MODEL",
    flag: "model",
    kind: "model",
    description: "the model: a GGUF path, hf:user/repo:quant or an http(s) URL",
    rule: "a GGUF file path, hf:user/repo:quant or an http(s) URL",
    default: () => undefined,
  },
  contextSize: {
    key: "contextSize",
    env: "KVZAP_CONTEXT_SIZE",
    flag: "ctx",
    kind: "int",
    description: "most positions the session may hold",
    rule: "a whole number ≥ 16",
    min: 16,
    max: INT_MAX,
    default: () => undefined,
    defaultText: "the model's training context; with --kv full, at most 8192",
  },
  gpuLayers: {
    key: "gpuLayers",
    env: "KVZAP_GPU_LAYERS",
    flag: "gpu-layers",
    kind: "int",
    description: "layers to put on the GPU; -1 = all",
    rule: "a whole number ≥ -1 (-1 = all layers)",
    min: -1,
    max: INT_MAX,
    default: () => -1,
  },
  threads: {
    key: "threads",
    env: "KVZAP_THREADS",
    flag: "threads",
    kind: "int",
    description: "CPU threads",
    rule: "a whole number ≥ 1",
    min: 1,
    max: 1024,
    default: () => Math.max(1, os.availableParallelism()),
    defaultText: "all cores",
  },
  cacheDir: {
    key: "cacheDir",
    env: "KVZAP_CACHE_DIR",
    flag: "cache-dir",
    kind: "path",
    description: "where downloaded models are kept",
    rule: "a directory path",
    default: () => defaultCacheDir(),
  },
  maxTokens: {
    key: "maxTokens",
    env: "KVZAP_MAX_TOKENS",
    flag: "max-tokens",
    kind: "int",
    description: "tokens to generate at most per answer",
    rule: "a whole number ≥ 1",
    min: 1,
    max: INT_MAX,
    default: () => 1024,
  },
};

/**
 * parseArgs options for the setting flags, for commands to spread into their own options
 * (values stay strings; pass them to resolveSetting, which parses and checks them).
 */
/** `~/.cache/kvzap`, or `$XDG_CACHE_HOME/kvzap` when that is set to an absolute path (as the XDG spec requires). */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".cache"), "kvzap");
}

export function isSettingKey(name: string): name is SettingKey {
  return (SETTING_KEYS as readonly string[]).includes(name);
}

/** The key a user meant: `contextSize`, `context-size`, `context_size` and `CONTEXTSIZE` all name contextSize. */
export function findSettingKey(name: string): SettingKey | undefined {
  const squash = (s: string) => s.replace(/[-_]/g, "").toLowerCase();
  return SETTING_KEYS.find((k) => squash(k) === squash(name));
}

export type Checked<T> = { ok: true; value: T } | { ok: false; problem: string };

/** The hub forms (hf:user/repo…, also written hf://, huggingface:, hf.co/, huggingface.co/) and plain URLs. */
const HUB_PREFIX = /^(hf:|huggingface:|hf\.co\/|huggingface\.co\/)/i;
const URL_PREFIX = /^https?:\/\//i;

/** True for a model that names a download rather than a local file: what the downloader and the settings both go by. */
export function isRemoteModelSpec(spec: string): boolean {
  const t = spec.trim();
  return HUB_PREFIX.test(t) || URL_PREFIX.test(t);
}

function fail(key: SettingKey, shown: string): { ok: false; problem: string } {
  return { ok: false, problem: `must be ${SETTINGS[key].rule}, got ${shown}` };
}

function checkInt<K extends SettingKey>(key: K, n: number, shown: string): Checked<Settings[K]> {
  const spec = SETTINGS[key];
  if (!Number.isSafeInteger(n)) return fail(key, shown);
  if (spec.min !== undefined && n < spec.min) return fail(key, shown);
  if (spec.max !== undefined && n > spec.max) return { ok: false, problem: `must be at most ${spec.max}, got ${shown}` };
  return { ok: true, value: n as Settings[K] };
}

function expandPath(p: string, baseDir: string): string {
  const home = p === "~" || p.startsWith("~/") || p.startsWith("~\\");
  return path.resolve(baseDir, home ? path.join(os.homedir(), p.slice(1)) : p);
}

/** `scheme://…` with a scheme other than http(s): ftp://, s3://, file:// and the like. */
const OTHER_SCHEME = /^([a-z][a-z0-9+.-]*):\/\//i;

/** Why a model spec with a URL scheme we do not download from is refused, or null. */
export function unsupportedScheme(spec: string): string | null {
  const m = OTHER_SCHEME.exec(spec.trim());
  if (!m || URL_PREFIX.test(spec.trim()) || HUB_PREFIX.test(spec.trim())) return null;
  return `unsupported URL scheme ${m[1].toLowerCase()}:// in '${spec.trim()}': give a local GGUF path, an http(s) URL or hf:user/repo:quant`;
}

function checkText<K extends SettingKey>(key: K, text: string, shown: string, baseDir: string): Checked<Settings[K]> {
  const spec = SETTINGS[key];
  const t = text.trim();
  if (t === "") return fail(key, shown);
  const scheme = spec.kind === "model" ? unsupportedScheme(t) : null;
  if (scheme) return { ok: false, problem: scheme };
  if (spec.kind === "model" && isRemoteModelSpec(t)) {
    if (URL_PREFIX.test(t)) {
      if (!URL.canParse(t)) return fail(key, shown);
      return { ok: true, value: t as Settings[K] };
    }
    // hf:user/repo, optionally followed by :quant or /file.gguf
    if (!new RegExp(`${HUB_PREFIX.source}(//)?[^\\s/:]+/[^\\s/:]+([:/#]\\S*)?$`, "i").test(t)) return fail(key, shown);
    return { ok: true, value: t as Settings[K] };
  }
  return { ok: true, value: expandPath(t, baseDir) as Settings[K] };
}

/**
 * Parses a value typed by a person (a flag, an environment variable, `kvzap config set`). Paths get `~` expanded and
 * are made absolute against `baseDir`, so a value saved to the config file means the same from any directory.
 */
export function parseSettingValue<K extends SettingKey>(key: K, raw: string, baseDir = process.cwd()): Checked<Settings[K]> {
  const shown = `'${raw}'`;
  if (SETTINGS[key].kind === "int") {
    const t = raw.trim();
    if (!/^[+-]?\d+$/.test(t)) return fail(key, shown);
    return checkInt(key, Number(t), shown);
  }
  return checkText(key, raw, shown, baseDir);
}

/** Checks a value that is already typed (read from the config file's JSON, or passed by code). */
export function checkSettingValue<K extends SettingKey>(key: K, value: unknown, baseDir = process.cwd()): Checked<Settings[K]> {
  const shown = JSON.stringify(value) ?? String(value);
  if (SETTINGS[key].kind === "int") return typeof value === "number" ? checkInt(key, value, shown) : fail(key, shown);
  return typeof value === "string" ? checkText(key, value, shown, baseDir) : fail(key, shown);
}

/** One line per key, for help texts: `  maxTokens  KVZAP_MAX_TOKENS  tokens per answer at most (default: 1024)`. */
export function describeSettings(): string {
  const kw = Math.max(...SETTING_KEYS.map((k) => k.length));
  const ew = Math.max(...SETTING_KEYS.map((k) => SETTINGS[k].env.length));
  return SETTING_KEYS.map((k) => {
    const spec = SETTINGS[k];
    const d = spec.default();
    const shownDefault = spec.defaultText ?? (d === undefined ? "none" : String(d));
    return `  ${k.padEnd(kw)}  ${spec.env.padEnd(ew)}  ${spec.description} (default: ${shownDefault})`;
  }).join("\n");
}
