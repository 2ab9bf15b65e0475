import { loadDocument } from "../documents/index.js";
import type { Model } from "../engine/model.js";
import type { GenerationResult } from "../engine/session.js";
import { resolveSetting } from "../settings/resolve.js";
import { intFlag, numberFlag } from "./args.js";
import { defineCommand } from "./command.js";
import { KV_GROUP } from "./kv-args.js";
import { MAX_TOKENS_OPTION, MODEL_OPTION, RUNTIME_OPTIONS, SEED_OPTION, temperatureOption } from "./options.js";
import { UsageError, UserError } from "../base/errors.js";
import { StopSignals } from "../base/signals.js";
import { stdoutClosed } from "./stdout.js";
import { loadRuntimeModel, resolveRuntime } from "./runtime.js";

export const RUN = defineCommand({
  name: "run",
  usage: ["[MODEL] (--prompt TEXT | --file F) [options]"],
  description: "One-shot completion of a prompt, for scripts and tests. The continuation streams to stdout.",
  arguments: [["MODEL", "a GGUF path, hf:user/repo:quant or an http(s) URL (or --model)"]],
  groups: [
    {
      options: {
        ...MODEL_OPTION,
        prompt: { short: "p", value: "TEXT", help: "the prompt; - reads it from stdin" },
        file: { short: "f", value: "F", help: "read the prompt from a document (PDF: its text; text, Markdown), as chat and summarize read it; - reads stdin" },
        ...MAX_TOKENS_OPTION,
        temp: temperatureOption(0.8),
        "top-k": { value: "K", help: "top-k sampling; 0 = off", default: "40", check: (v: string) => void intFlag(v, "top-k", 0) },
        "top-p": { value: "P", help: "nucleus sampling", default: "0.95", check: (v: string) => void numberFlag(v, "top-p", 0, 1) },
        "min-p": { value: "P", help: "min-p sampling", default: "0.05", check: (v: string) => void numberFlag(v, "min-p", 0, 1) },
        "repeat-penalty": {
          value: "R",
          help: "repetition penalty; 1 = off",
          default: "1.0",
          check: (v: string) => void numberFlag(v, "repeat-penalty", 0.01, 10),
        },
        ...SEED_OPTION,
        stop: { value: "S", multiple: true, help: "stop before this string (repeatable)" },
        ...RUNTIME_OPTIONS,
        json: { type: "boolean", help: "print {text, tokens, stats} as JSON instead of streaming text" },
      },
    },
    KV_GROUP,
  ],
});

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = RUN.parse(argv);
  if (RUN.printHelpIf(values)) return 0;
  if (positionals.length > 1) throw new UsageError(`one MODEL expected, got ${positionals.length}: ${positionals.join(" ")}`);
  if ((values.prompt === undefined) === (values.file === undefined)) throw new UsageError("give exactly one of --prompt TEXT or --file F");
  const maxTokens = resolveSetting("maxTokens", values["max-tokens"]).value;
  const temperature = numberFlag(values.temp, "temp", 0, 100) ?? 0.8;
  const topK = intFlag(values["top-k"], "top-k", 0);
  const topP = numberFlag(values["top-p"], "top-p", 0, 1);
  const minP = numberFlag(values["min-p"], "min-p", 0, 1);
  const repeatPenalty = numberFlag(values["repeat-penalty"], "repeat-penalty", 0.01, 10);
  const seed = intFlag(values.seed, "seed", 0, 0xffffffff);
  const runtime = resolveRuntime(values, positionals[0]);

  let prompt = values.prompt ?? "";
  // The same loader as chat and summarize: a PDF gives its text, never its source.
  if (prompt === "-" || values.file === "-") prompt = await readStdinText();
  else if (values.file !== undefined) prompt = (await loadDocument(values.file)).text;
  if (prompt.length === 0) throw new UsageError("the prompt is empty");

  // Ctrl-C stops the load as well as the generation, and so does a closed stdout (`kvzap run … | head`)
  const stop = new StopSignals({ signals: ["SIGINT"] });
  const signal = AbortSignal.any([stop.signal, stdoutClosed]);
  let model: Model;
  try {
    model = await loadRuntimeModel(runtime, values, undefined, signal);
  } catch (e) {
    stop.dispose();
    throw e;
  }
  try {
    const session = await model.createSession(runtime.session);
    for (const note of session.notes) process.stderr.write(`kvzap run: note: ${note}\n`);
    const tokens = model.tokenize(prompt, { addSpecial: true, parseSpecial: false });
    const result: GenerationResult = await session.generate(tokens, {
      maxTokens,
      temperature,
      topK,
      topP,
      minP,
      repeatPenalty,
      seed,
      stop: values.stop,
      signal,
      onText: values.json ? undefined : (t) => process.stdout.write(t),
    });
    if (values.json) {
      const s = result.stats;
      const out = {
        text: result.text,
        tokens: result.tokens,
        stopReason: result.stopReason,
        stats: {
          promptTokens: s.promptTokens,
          generatedTokens: s.generatedTokens,
          promptTokensPerSecond: round(s.promptTokensPerSecond),
          decodeTokensPerSecond: round(s.decodeTokensPerSecond),
          promptMs: round(s.promptMs),
          decodeMs: round(s.decodeMs),
          contextSize: session.contextSize,
          kv: s.kv,
        },
      };
      process.stdout.write(JSON.stringify(out) + "\n");
    } else {
      process.stdout.write("\n");
    }
    return result.stopReason === "abort" ? 130 : 0;
  } finally {
    stop.dispose();
    model.dispose();
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

async function readStdinText(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  const buf = Buffer.concat(chunks);
  if (buf.includes(0)) throw new UserError("stdin is not text");
  return buf.toString("utf8").replace(/^\uFEFF/, "");
}
