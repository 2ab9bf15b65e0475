import { configPath, getConfig, listConfig, setConfig, unsetConfig, type ConfigEntry } from "../commands/config.js";
import { SETTINGS, describeSettings } from "../settings/index.js";
import { defineCommand } from "./command.js";
import { UsageError, UserError } from "../base/errors.js";

export const CONFIG = defineCommand({
  name: "config",
  usage: ["get KEY [--json]", "set KEY VALUE", "unset KEY", "list [--json]", "path"],
  description: `Settings every command uses. A command-line flag beats the environment variable, which beats the config file,
which beats the default.

  get KEY            the value in effect (environment, config file or default)
  set KEY VALUE      save a value to the config file
  unset KEY          remove a value from the config file
  list               every key with its value, where it comes from and what a valid value is (a bad one is flagged)
  path               the config file's path (KVZAP_CONFIG_DIR moves it)`,
  groups: [{ options: { json: { type: "boolean", help: "print JSON (get, list)" } } }],
  notes: `keys, their environment variables and defaults:
${describeSettings()}`,
});

const SUBCOMMANDS = ["get", "set", "unset", "list", "path"];

// parseArgs takes `-1` for a flag; a stand-in keeps negative numbers (`set gpuLayers -1`) positional.
const NEGATIVE = /^-\d/;
const STANDIN = "\u0000arg";

function parse(argv: string[]) {
  const args = argv.map((a, i) => (NEGATIVE.test(a) ? `${STANDIN}${i}` : a));
  const { values, positionals } = CONFIG.parse(args);
  const restored = positionals.map((p) => (p.startsWith(STANDIN) ? argv[Number(p.slice(STANDIN.length))] : p));
  return { json: values.json === true, help: values.help === true, positionals: restored };
}

function out(text: string): void {
  process.stdout.write(text + "\n");
}

/** The value in effect; an unset one names its default when the default is not a plain value. */
function shown(e: ConfigEntry): string {
  if (e.value !== undefined) return String(e.value);
  const d = SETTINGS[e.key].defaultText;
  return d ? `(${d})` : "(not set)";
}

function sourceLabel(e: ConfigEntry): string {
  return e.source === "env" ? `env ${e.env}` : e.source;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join("  ")).join("\n");
}

function expectArgs(sub: string, args: string[], names: string[]): void {
  if (args.length === names.length) return;
  const what = names.length === 0 ? "no arguments" : names.join(" ");
  throw new UsageError(`${sub} takes ${what}, got ${args.length === 0 ? "none" : args.map((a) => `'${a}'`).join(" ")}`);
}

export async function main(argv: string[]): Promise<number> {
  const { json, help, positionals } = parse(argv);
  if (help || positionals[0] === "help") {
    out(CONFIG.help());
    return 0;
  }
  const [sub, ...args] = positionals;
  if (sub === undefined) throw new UsageError(`a subcommand is required: ${SUBCOMMANDS.join(", ")}`);
  if (!SUBCOMMANDS.includes(sub)) throw new UsageError(`unknown subcommand '${sub}'; use one of ${SUBCOMMANDS.join(", ")}`);
  if (json && sub !== "get" && sub !== "list") throw new UsageError(`--json applies to get and list, not ${sub}`);

  switch (sub) {
    case "get": {
      expectArgs(sub, args, ["KEY"]);
      const e = await getConfig(args[0]);
      if (json) {
        out(JSON.stringify({ key: e.key, value: e.value ?? null, source: e.source }));
        return 0;
      }
      if (e.value === undefined) throw new UserError(`${e.key} is not set`);
      out(String(e.value));
      return 0;
    }
    case "set": {
      expectArgs(sub, args, ["KEY", "VALUE"]);
      const r = await setConfig(args[0], args[1]);
      out(`${r.key} = ${r.value}`);
      if (r.overriddenBy) process.stderr.write(`note: ${r.overriddenBy} is set in the environment and overrides this value\n`);
      if (r.missingPath) process.stderr.write(`note: ${r.missingPath} does not exist (yet)\n`);
      return 0;
    }
    case "unset": {
      expectArgs(sub, args, ["KEY"]);
      const r = await unsetConfig(args[0]);
      const now = `${shown(r.now)} (${sourceLabel(r.now)})`;
      out(r.removed ? `${r.key} unset; now ${now}` : `${r.key} was not set in the config file; it is ${now}`);
      return 0;
    }
    case "list": {
      expectArgs(sub, args, []);
      const entries = await listConfig();
      if (json) {
        const obj = Object.fromEntries(
          entries.map((e) => [e.key, { value: e.value ?? null, source: e.source, rule: e.rule, ...(e.problem ? { problem: e.problem } : {}) }]),
        );
        out(JSON.stringify(obj, null, 2));
        return 0;
      }
      out(
        table([
          ["KEY", "VALUE", "SOURCE", "VALID"],
          ...entries.map((e) => [e.key, e.problem ? `✗ ${e.problem}` : shown(e), e.problem ? "-" : sourceLabel(e), e.rule]),
        ]),
      );
      const bad = entries.filter((e) => e.problem);
      if (bad.length > 0)
        process.stderr.write(`note: fix ${bad.map((e) => e.key).join(", ")} with \`kvzap config set KEY VALUE\` or \`kvzap config unset KEY\`\n`);
      return 0;
    }
    default: {
      expectArgs(sub, args, []);
      out(await configPath());
      return 0;
    }
  }
}
