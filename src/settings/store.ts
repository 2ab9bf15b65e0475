import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Conf from "conf";
import { UserError } from "../base/errors.js";
import { checkSettingValue, type SettingKey, type Settings } from "./schema.js";

const CONFIG_FILE = "config.json";

/**
 * The directory of the config file: `$KVZAP_CONFIG_DIR`, or the one conf picks for projectName "kvzap" with no
 * suffix (env-paths' rule: `$XDG_CONFIG_HOME/kvzap` or `~/.config/kvzap` on Linux). We work it out ourselves so
 * that reading settings never has to construct conf, which creates the directory as a side effect.
 */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  const override = env.KVZAP_CONFIG_DIR;
  if (override) return path.resolve(override);
  const home = os.homedir();
  if (process.platform === "darwin") return path.join(home, "Library", "Preferences", "kvzap");
  if (process.platform === "win32") return path.join(env.APPDATA || path.join(home, "AppData", "Roaming"), "kvzap", "Config");
  return path.join(env.XDG_CONFIG_HOME || path.join(home, ".config"), "kvzap");
}

export function configFilePath(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(configDir(env), CONFIG_FILE);
}

/** conf over our config file; a file that is not a JSON object is reported, never silently replaced. */
class ConfigFile {
  readonly path: string;
  #problem: string | undefined;
  readonly #conf: Conf<Record<string, unknown>>;

  constructor() {
    const cwd = configDir();
    this.path = path.join(cwd, CONFIG_FILE);
    try {
      this.#conf = new Conf<Record<string, unknown>>({
        projectName: "kvzap",
        projectSuffix: "",
        cwd,
        configName: "config",
        accessPropertiesByDotNotation: false,
        clearInvalidConfig: false,
        // conf would throw a bare SyntaxError (from its constructor, too); record what is wrong so store() can name
        // the file, and refuse JSON that is not an object (`[]`, `null`), which conf would quietly turn into a store.
        deserialize: (text: string) => {
          this.#problem = undefined;
          if (text.trim() === "") return {};
          try {
            const data: unknown = JSON.parse(text);
            if (data !== null && typeof data === "object" && !Array.isArray(data)) return data as Record<string, unknown>;
            this.#problem = "it is not a JSON object";
          } catch (e) {
            this.#problem = `it is not valid JSON (${e instanceof Error ? e.message : String(e)})`;
          }
          return {};
        },
      });
    } catch (e) {
      throw fileError(this.path, "read", e);
    }
  }

  /** The whole file as stored, after checking it is a JSON object. */
  store(): Record<string, unknown> {
    let data: Record<string, unknown>;
    this.#problem = undefined;
    try {
      data = this.#conf.store;
    } catch (e) {
      throw fileError(this.path, "read", e);
    }
    if (this.#problem !== undefined) {
      throw new UserError(`cannot use the config file ${this.path}: ${this.#problem}; fix it or delete it`);
    }
    return data;
  }

  set(key: string, value: unknown): void {
    this.store();
    try {
      this.#conf.set(key, value);
    } catch (e) {
      throw fileError(this.path, "write", e);
    }
  }

  delete(key: string): boolean {
    if (!Object.hasOwn(this.store(), key)) return false;
    try {
      this.#conf.delete(key);
    } catch (e) {
      throw fileError(this.path, "write", e);
    }
    return true;
  }
}

function fileError(file: string, verb: "read" | "write", e: unknown): UserError {
  if (e instanceof UserError) return e;
  const err = e as NodeJS.ErrnoException;
  const why = err?.code ? `${err.code}${err.path && err.path !== file ? ` on ${err.path}` : ""}` : e instanceof Error ? e.message : String(e);
  return new UserError(`cannot ${verb} the config file ${file}: ${why}`);
}

/** The config file's contents as stored (unknown keys included); empty when there is no file. */
export function readConfigFile(): Record<string, unknown> {
  if (!fs.existsSync(configFilePath())) return {};
  return new ConfigFile().store();
}

/**
 * The value the config file holds for `key`, checked against the schema; undefined when the file does not set it.
 * A value that breaks the rule is a UserError naming the file and the way to fix it.
 */
export function readConfigValue<K extends SettingKey>(key: K): Settings[K] | undefined {
  const data = readConfigFile();
  if (!Object.hasOwn(data, key)) return undefined;
  const file = configFilePath();
  // Relative paths written by hand are taken relative to the config file.
  const checked = checkSettingValue(key, data[key], path.dirname(file));
  if (!checked.ok) {
    throw new UserError(
      `${key} in the config file ${file} ${checked.problem}; fix it with \`kvzap config set ${key} VALUE\` or remove it with \`kvzap config unset ${key}\``,
    );
  }
  return checked.value;
}

/** Saves a value (which must already satisfy the schema) and returns the config file's path. */
export function writeConfigValue<K extends SettingKey>(key: K, value: Settings[K]): string {
  const checked = checkSettingValue(key, value);
  if (!checked.ok) throw new UserError(`${key} ${checked.problem}`);
  const file = new ConfigFile();
  file.set(key, checked.value);
  return file.path;
}

/** Removes a key from the config file; false when it was not there. Never creates the file. */
export function deleteConfigValue(key: string): boolean {
  if (!fs.existsSync(configFilePath())) return false;
  return new ConfigFile().delete(key);
}
