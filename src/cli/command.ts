// One declaration per command: its arguments and options, with each option's value name, help text, default and
// check, from which both the parser (node:util.parseArgs, strict) and the --help text are made.
import { UsageError } from "../base/errors.js";
import { parseCommandArgs, type OptionSpec } from "./args.js";

export interface OptionDecl {
  /** Default "string". */
  type?: "string" | "boolean";
  short?: string;
  /** Repeatable: the values arrive as a list. */
  multiple?: boolean;
  /** The value's name in the help text ("N", "PATH", "full|window|kvzap"). */
  value?: string;
  help: string;
  /** The default, as the help text states it ("512", "the profile's"). */
  default?: string;
  /** Throws a UsageError for a bad value; runs while parsing, before any work. */
  check?: (value: string) => void;
}

export type OptionDecls = Record<string, OptionDecl>;

export interface OptionGroup {
  /** The heading above the group in --help; the first group has none. */
  title?: string;
  options: OptionDecls;
}

export interface CommandDecl {
  /** "chat", or "bench speed" for a subcommand. */
  name: string;
  /** What follows `kvzap NAME` on the usage line (one line per form). */
  usage: string[];
  description: string;
  /** Positional arguments: [name, help]. */
  arguments?: [string, string][];
  groups: OptionGroup[];
  /** A closing paragraph: exit codes, keys of the chat screen. */
  notes?: string;
}

type ValueOf<D extends OptionDecl> = D["type"] extends "boolean" ? boolean : D["multiple"] extends true ? string[] : string;
type Merge<G extends readonly OptionGroup[]> = G extends readonly [infer H extends OptionGroup, ...infer R extends readonly OptionGroup[]]
  ? H["options"] & Merge<R>
  : unknown;
export type Values<O> = { -readonly [K in keyof O]?: O[K] extends OptionDecl ? ValueOf<O[K]> : never };

const HELP_OPTION: OptionDecl = { type: "boolean", short: "h", help: "show this help" };
const COLUMN = 24;

function flagText(name: string, o: OptionDecl): string {
  const long = `--${name}${o.type === "boolean" ? "" : ` ${o.value ?? "X"}`}`;
  return o.short ? `-${o.short}, ${long}` : long;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  for (const para of text.split("\n")) {
    let line = "";
    for (const word of para.split(" ")) {
      if (line !== "" && line.length + 1 + word.length > width) {
        lines.push(line);
        line = word;
      } else line = line === "" ? word : `${line} ${word}`;
    }
    lines.push(line);
  }
  return lines;
}

function entry(left: string, help: string): string {
  const body = wrap(help, 118 - COLUMN);
  const first = left.length + 3 <= COLUMN ? `  ${left.padEnd(COLUMN - 2)}${body[0]}` : `  ${left}\n${" ".repeat(COLUMN)}${body[0]}`;
  return [first, ...body.slice(1).map((l) => " ".repeat(COLUMN) + l)].join("\n");
}

export class Command<G extends readonly OptionGroup[]> {
  readonly options: OptionDecls;

  constructor(readonly decl: CommandDecl & { groups: G }) {
    this.options = Object.assign({}, ...decl.groups.map((g) => g.options), { help: HELP_OPTION });
  }

  /** The --help text. */
  help(): string {
    const d = this.decl;
    const out = [d.usage.map((u, i) => `${i === 0 ? "usage:" : "      "} kvzap ${d.name} ${u}`).join("\n"), "", d.description, ""];
    for (const [i, g] of d.groups.entries()) {
      if (i > 0 || g.title) out.push(i > 0 ? `\n${g.title ?? ""}` : (g.title ?? ""));
      if (i === 0) for (const [name, help] of d.arguments ?? []) out.push(entry(name, help));
      for (const [name, o] of Object.entries(g.options))
        out.push(entry(flagText(name, o), o.default === undefined ? o.help : `${o.help} (default: ${o.default})`));
    }
    out.push(entry(flagText("help", HELP_OPTION), HELP_OPTION.help));
    if (d.notes) out.push("", d.notes);
    return out.join("\n");
  }

  /** Parses and checks argv: an unknown flag, a missing or bad value is a UsageError naming it. */
  parse(argv: string[]): { values: Values<Merge<G> & { help: OptionDecl & { type: "boolean" } }>; positionals: string[] } {
    const spec: OptionSpec = {};
    for (const [name, o] of Object.entries(this.options)) {
      spec[name] = { type: o.type ?? "string", ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) };
    }
    const { values, positionals } = parseCommandArgs(argv, spec);
    if (!values.help) {
      for (const [name, o] of Object.entries(this.options)) {
        const v = values[name];
        if (o.check === undefined || v === undefined || typeof v === "boolean") continue;
        for (const one of Array.isArray(v) ? v : [v]) if (typeof one === "string") o.check(one);
      }
    }
    return { values: values as never, positionals };
  }

  /** Writes --help to stdout when asked; true when it did. */
  printHelpIf(values: { help?: boolean }): boolean {
    if (values.help) process.stdout.write(this.help() + "\n");
    return Boolean(values.help);
  }
}

export function defineCommand<const G extends readonly OptionGroup[]>(decl: CommandDecl & { groups: G }): Command<G> {
  return new Command(decl);
}

/** A check that the value is one of `values`. */
export function oneOf(flag: string, values: string[]) {
  return (v: string): void => {
    if (!values.includes(v)) throw new UsageError(`--${flag} must be ${values.slice(0, -1).join(", ")} or ${values[values.length - 1]}, got '${v}'`);
  };
}

/** Exactly `max` positionals at most, named in the message. */
export function atMostPositionals(positionals: string[], max: number, what: string): void {
  if (positionals.length > max)
    throw new UsageError(`${max === 1 ? `one ${what}` : `${max} ${what}`} expected, got ${positionals.length}: ${positionals.join(" ")}`);
}
