import fs from "node:fs";
import { UsageError, UserError } from "../base/errors.js";
import {
  SETTINGS,
  SETTING_KEYS,
  configFilePath,
  deleteConfigValue,
  findSettingKey,
  isRemoteModelSpec,
  parseSettingValue,
  resolveSetting,
  writeConfigValue,
  type ResolvedSetting,
  type SettingKey,
  type Settings,
} from "../settings/index.js";

export interface ConfigEntry<K extends SettingKey = SettingKey> extends ResolvedSetting<K> {
  key: K;
  /** The environment variable that overrides the config file for this key. */
  env: string;
  /** What a valid value is ("a whole number ≥ 16"). */
  rule: string;
  /** Set by listConfig when the value in the environment or config file is invalid (the default is then shown). */
  problem?: string;
}

/** The setting a user named (camelCase or kebab-case), or a UsageError listing the valid keys. */
export function settingKey(name: string): SettingKey {
  const key = findSettingKey(name);
  if (!key) throw new UsageError(`unknown key '${name}'; valid keys: ${SETTING_KEYS.join(", ")}`);
  return key;
}

function entry<K extends SettingKey>(key: K, resolved: ResolvedSetting<K>): ConfigEntry<K> {
  return { key, env: SETTINGS[key].env, rule: SETTINGS[key].rule, ...resolved };
}

/** The value in effect without flags (environment, then config file, then default), and where it came from. */
export async function getConfig(name: string): Promise<ConfigEntry> {
  const key = settingKey(name);
  return entry(key, resolveSetting(key));
}

export interface SetResult<K extends SettingKey = SettingKey> {
  key: K;
  value: Settings[K];
  path: string;
  /** Set when an environment variable is set and will keep overriding the saved value. */
  overriddenBy?: string;
  /** Set when the value is a local path that does not exist (yet); it is saved anyway. */
  missingPath?: string;
}

/** Parses (integers as numbers, paths made absolute), checks and saves a value; a bad value is a UsageError with the rule. */
export async function setConfig(name: string, raw: string): Promise<SetResult> {
  const key = settingKey(name);
  const checked = parseSettingValue(key, raw);
  if (!checked.ok) throw new UsageError(`${key} ${checked.problem}`);
  const value = checked.value;
  const path = writeConfigValue(key, value);
  const result: SetResult = { key, value, path };
  const env = SETTINGS[key].env;
  if (process.env[env]?.trim()) result.overriddenBy = env;
  if (key === "model" && typeof value === "string" && !isRemoteModelSpec(value) && !fs.existsSync(value)) result.missingPath = value;
  return result;
}

export interface UnsetResult {
  key: SettingKey;
  /** False when the config file did not set the key. */
  removed: boolean;
  /** What is in effect now. */
  now: ConfigEntry;
}

export async function unsetConfig(name: string): Promise<UnsetResult> {
  const key = settingKey(name);
  const removed = deleteConfigValue(key);
  return { key, removed, now: entry(key, resolveSetting(key)) };
}

/**
 * Every key with its value in effect, its source and its rule, in SETTING_KEYS order. A bad value in the environment
 * or the config file does not stop the listing: its key shows the problem (and the default, which is not in effect:
 * commands that read the key fail until it is fixed).
 */
export async function listConfig(): Promise<ConfigEntry[]> {
  return SETTING_KEYS.map((key) => {
    try {
      return entry(key, resolveSetting(key));
    } catch (e) {
      if (!(e instanceof UserError)) throw e;
      return { ...entry(key, { value: SETTINGS[key].default(), source: "default" } as ResolvedSetting<typeof key>), problem: e.message };
    }
  });
}

/** Where the config file is (or would be); it may not exist yet. */
export async function configPath(): Promise<string> {
  return configFilePath();
}
