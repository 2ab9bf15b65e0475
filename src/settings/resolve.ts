import { UsageError, UserError } from "../base/errors.js";
import { SETTINGS, SETTING_KEYS, checkSettingValue, parseSettingValue, type SettingKey, type Settings } from "./schema.js";
import { readConfigValue } from "./store.js";

export type SettingSource = "flag" | "env" | "config" | "default";

export interface ResolvedSetting<K extends SettingKey = SettingKey> {
  value: Settings[K];
  source: SettingSource;
}

export type ResolvedSettings = { [K in SettingKey]: ResolvedSetting<K> };

/** What a command passes for a setting's flag: the raw string from parseArgs, an already parsed value, or nothing. */
export type FlagValue<K extends SettingKey> = Settings[K] | string | undefined;

/**
 * The value in effect for `key`: a flag beats the environment variable, which beats the config file, which beats
 * the default. A bad flag is a UsageError naming the flag; a bad environment variable a UserError naming it; a bad
 * config value a UserError naming the file. Sources that lose are not read, so a broken config file does not stop a
 * command whose flags or environment already decide.
 */
export function resolveSetting<K extends SettingKey>(key: K, flagValue?: FlagValue<K>): ResolvedSetting<K> {
  const spec = SETTINGS[key];
  if (flagValue !== undefined) {
    const checked = typeof flagValue === "string" ? parseSettingValue(key, flagValue) : checkSettingValue(key, flagValue);
    if (!checked.ok) throw new UsageError(`--${spec.flag} ${checked.problem}`);
    return { value: checked.value, source: "flag" };
  }
  const env = process.env[spec.env];
  // An empty variable counts as unset, so `KVZAP_MODEL= kvzap …` falls back to the config file.
  if (env !== undefined && env.trim() !== "") {
    const checked = parseSettingValue(key, env);
    if (!checked.ok) throw new UserError(`environment variable ${spec.env} ${checked.problem}`);
    return { value: checked.value, source: "env" };
  }
  const stored = readConfigValue(key);
  if (stored !== undefined) return { value: stored, source: "config" };
  return { value: spec.default(), source: "default" };
}

/** Every setting resolved, for `kvzap config list` and for commands that want them all. */
export function resolveAllSettings(flags: { [K in SettingKey]?: FlagValue<K> } = {}): ResolvedSettings {
  const out: Partial<Record<SettingKey, ResolvedSetting>> = {};
  for (const key of SETTING_KEYS) out[key] = resolveSetting(key, flags[key]);
  return out as ResolvedSettings;
}

export const NO_MODEL_MESSAGE = "no model given: pass --model PATH or --model hf:user/repo:quant, set KVZAP_MODEL, or run `kvzap config set model PATH`";

/**
 * The model spec in effect (a path or a URI, not yet downloaded or checked for existence). None at all is a
 * UsageError: the command line (or the settings) lacks an argument, exit 2 as for any missing argument.
 */
export function requireModel(flagValue?: string): string {
  const { value } = resolveSetting("model", flagValue);
  if (value === undefined) throw new UsageError(NO_MODEL_MESSAGE);
  return value;
}
