import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../base/errors.js";

export type OptionSpec = NonNullable<ParseArgsConfig["options"]>;

/**
 * node's parseArgs takes "--tau -4" for a missing value followed by an option; a negative number after an option that
 * takes a value is that value.
 */
function joinNegativeValues(argv: string[], options: OptionSpec): string[] {
  const takesValue = new Set<string>();
  for (const [name, o] of Object.entries(options)) {
    if (o.type === "string") {
      takesValue.add(`--${name}`);
      if (o.short) takesValue.add(`-${o.short}`);
    }
  }
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = argv[i + 1];
    if (takesValue.has(a) && next !== undefined && /^-(\d|\.\d|inf)/i.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

/** Parses argv strictly: an unknown flag or a missing value is a UsageError naming it. */
export function parseCommandArgs<O extends OptionSpec>(argv: string[], options: O, allowPositionals = true) {
  try {
    return parseArgs({ args: joinNegativeValues(argv, options), options, allowPositionals, strict: true });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    // node's messages mention "parseArgs"; keep only what the user needs.
    const unknown = /Unknown option '([^']+)'/.exec(msg);
    if (unknown) throw new UsageError(`unknown option ${unknown[1]}`);
    throw new UsageError(msg.replace(/\. To specify a positional argument.*$/s, "").replace(/^TypeError \[[A-Z_]+\]: /, ""));
  }
}

/** An integer flag within [min, max]; undefined when absent. */
export function intFlag(value: string | undefined, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value.trim())) throw new UsageError(`--${name} must be a whole number, got '${value}'`);
  const n = Number(value);
  if (n < min || n > max) {
    throw new UsageError(
      max === Number.MAX_SAFE_INTEGER ? `--${name} must be at least ${min}, got ${n}` : `--${name} must be between ${min} and ${max}, got ${n}`,
    );
  }
  return n;
}

/** A finite number flag within [min, max]; undefined when absent. */
export function numberFlag(value: string | undefined, name: string, min = -Infinity, max = Infinity): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n)) throw new UsageError(`--${name} must be a number, got '${value}'`);
  if (n < min || n > max) throw new UsageError(`--${name} must be between ${min} and ${max}, got ${n}`);
  return n;
}
