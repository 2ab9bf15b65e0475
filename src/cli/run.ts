import { loadDocument } from "../documents/index.js";
import type { Model } from "../engine/model.js";
import type { GenerationResult } from "../engine/session.js";
import { resolveSetting } from "../settings/resolve.js";
import { intFlag, numberFlag, parseCommandArgs } from "./args.js";
import { stdoutClosed } from "./stdout.js";
import { UsageError } from "./errors.js";
import { KV_HELP } from "./kv-args.js";
import { RUNTIME_OPTIONS, loadRuntimeModel, resolveRuntime } from "./runtime.js";

const HELP = `usage: kvzap run [MODEL] (--prompt TEXT | --file F) [options]

One-shot completion of a prompt, for scripts and tests. The continuation streams to stdout.

  MODEL               a GGUF path, hf:user/repo:quant, or an http(s) URL
                      (or --model; default: KVZAP_MODEL, then \`kvzap config set model\`)
  -p, --prompt TEXT   the prompt
  -f, --file F        read the prompt from a document: PDF (its text), plain text or Markdown, read as chat
                      and summarize read documents
  -n, --max-tokens N  tokens to generate at most (default: the maxTokens setting, 1024)
  --temp T            temperature; 0 = greedy (default 0.8)
  --top-k K           (default 40)       --top-p P  (default 0.95)      --min-p P  (default 0.05)
  --repeat-penalty R  (default 1.0 = off)
  --seed S            sampling seed (default: random)
  --stop S            stop before this string (repeatable)
  --ctx N             most positions the session may hold (default: the model's training context;
                      with --kv full, at most 8192)
  --batch N           prompt batch size (default 512)
  --threads N         CPU threads (default: all cores)
  --gpu-layers N      layers on the GPU; -1 = all (default -1; a CPU build ignores it)
  --cache-dir D       where downloaded models are kept
  --json              print {text, tokens, stats} as JSON instead of streaming text

${KV_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    prompt: { type: "string", short: "p" },
    file: { type: "string", short: "f" },
    ...RUNTIME_OPTIONS,
    "max-tokens": { type: "string", short: "n" },
    temp: { type: "string" },
    "top-k": { type: "string" },
    "top-p": { type: "string" },
    "min-p": { type: "string" },
    "repeat-penalty": { type: "string" },
    seed: { type: "string" },
    stop: { type: "string", multiple: true },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    process.stdout.write(HELP + "\n");
    return 0;
  }
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
  if (values.file !== undefined) prompt = (await loadDocument(values.file)).text;
  if (prompt.length === 0) throw new UsageError("the prompt is empty");

  // Ctrl-C stops the load as well as the generation
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once("SIGINT", onSigint);
  stdoutClosed.addEventListener("abort", onSigint);
  let model: Model;
  try {
    model = await loadRuntimeModel(runtime, values, undefined, controller.signal);
  } catch (e) {
    process.off("SIGINT", onSigint);
    stdoutClosed.removeEventListener("abort", onSigint);
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
      signal: controller.signal,
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
    process.off("SIGINT", onSigint);
    stdoutClosed.removeEventListener("abort", onSigint);
    model.dispose();
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
