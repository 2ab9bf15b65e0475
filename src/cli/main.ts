import { errorKind, errorMessage } from "../base/errors.js";
import { VERSION } from "../base/version.js";
import { exitCodeOf } from "./exit-codes.js";
import { guardStdout, stdoutClosed } from "./stdout.js";

type CommandMain = (argv: string[]) => Promise<number>;

// Each command's module is loaded only when it is called, so `kvzap info` never pays for Ink or PDF parsing.
const commands: Record<string, { summary: string; load: () => Promise<{ main: CommandMain }> }> = {
  chat: { summary: "chat about documents (PDF, text, Markdown) in the terminal", load: () => import("./chat.js") },
  info: { summary: "show a model's architecture and KV cache size", load: () => import("./info.js") },
  run: { summary: "one-shot completion for scripts and tests", load: () => import("./run.js") },
  calibrate: {
    summary: "build a KVzap profile for a model: oracle scores, fitted surrogate, τ for a target compression",
    load: () => import("./calibrate.js"),
  },
  eval: { summary: "quality against compression: task accuracy or KL/perplexity per KV policy, with tables and plots", load: () => import("./eval.js") },
  bench: { summary: "benchmarks: stock llama.cpp vs KVzap speed and memory, side by side", load: () => import("./bench.js") },
  profile: { summary: "import, show, list and validate KVzap profiles (surrogate weights + τ)", load: () => import("./profile.js") },
  summarize: { summary: "summarize documents in batch: one Markdown summary per input, resumable", load: () => import("./summarize.js") },
  config: { summary: "get, set and list settings (model, context size, GPU layers, …)", load: () => import("./config.js") },
};

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    "kvzap — long-context local inference with a KV cache that keeps only what the model needs",
    "",
    "usage: kvzap <command> [options]",
    "",
    "commands:",
    ...lines,
    "",
    "kvzap <command> --help shows a command's options.",
  ].join("\n");
}

export async function run(argv: string[]): Promise<number> {
  guardStdout();
  const [first, ...args] = argv;
  // `kvzap help CMD` is `kvzap CMD --help`.
  const [name, rest] = first === "help" && args[0] !== undefined ? [args[0], ["--help"]] : [first, args];
  if (!name || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage() + "\n");
    return name ? 0 : 2;
  }
  if (name === "--version" || name === "-v") {
    process.stdout.write(VERSION + "\n");
    return 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`kvzap: unknown command '${name}'\n\n${usage()}\n`);
    return 2;
  }
  try {
    const mod = await command.load();
    const code = await mod.main(rest);
    return stdoutClosed.aborted ? 0 : code;
  } catch (e) {
    const kind = errorKind(e);
    process.stderr.write(`kvzap ${name}: ${errorMessage(e)}\n${kind === "usage" ? `(see kvzap ${name} --help)\n` : ""}`);
    if (kind === null && process.env.KVZAP_DEBUG && e instanceof Error && e.stack) process.stderr.write(e.stack + "\n");
    return exitCodeOf(e);
  }
}
