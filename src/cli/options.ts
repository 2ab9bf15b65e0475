// Options that several commands share, declared once: the model and runtime flags (backed by settings, so their
// checks and defaults are the settings schema's), sampling, and --json.
import { SETTINGS, type SettingKey } from "../settings/schema.js";
import { parseSettingValue } from "../settings/schema.js";
import { UsageError } from "../base/errors.js";
import type { OptionDecl, OptionDecls } from "./command.js";
import { intFlag, numberFlag } from "./args.js";

/** A flag that overrides a setting: help, default and check come from the settings schema. */
export function settingOption(key: SettingKey, value: string, extra: Partial<OptionDecl> = {}): OptionDecl {
  const spec = SETTINGS[key];
  const d = spec.defaultText ?? (spec.default() === undefined ? undefined : String(spec.default()));
  return {
    value,
    help: `${spec.description} (${spec.env}, \`kvzap config set ${key}\`)`,
    default: d,
    check: (v) => {
      const r = parseSettingValue(key, v);
      if (!r.ok) throw new UsageError(`--${spec.flag} ${r.problem}`);
    },
    ...extra,
  };
}

export const MODEL_OPTION = {
  model: settingOption("model", "M", { help: "the model: a GGUF path, hf:user/repo:quant or an http(s) URL (KVZAP_MODEL, `kvzap config set model`)" }),
} as const;

/** The flags of every command that runs a model. */
export const RUNTIME_OPTIONS = {
  ctx: settingOption("contextSize", "N"),
  batch: { value: "N", help: "prompt batch size", default: "512", check: (v: string) => void intFlag(v, "batch", 1, 1 << 20) },
  threads: settingOption("threads", "N"),
  "gpu-layers": settingOption("gpuLayers", "N", { help: "layers on the GPU; -1 = all (a CPU build ignores it)" }),
  "cache-dir": settingOption("cacheDir", "D", { help: "where downloaded models are kept" }),
} as const satisfies OptionDecls;

export const MAX_TOKENS_OPTION = {
  "max-tokens": settingOption("maxTokens", "N", { short: "n" }),
} as const;

export function temperatureOption(defaultValue: number): OptionDecl {
  return { value: "T", help: "temperature; 0 = greedy", default: String(defaultValue), check: (v) => void numberFlag(v, "temp", 0, 100) };
}

export const SEED_OPTION = {
  seed: { value: "S", help: "sampling seed", default: "random", check: (v: string) => void intFlag(v, "seed", 0, 0xffffffff) },
} as const satisfies OptionDecls;

export const JSON_OPTION = { json: { type: "boolean", help: "print JSON on stdout" } } as const satisfies OptionDecls;
