import { basename } from "node:path";
import { Conversation, openConversation, type ChatConfig, type ChatTurn, type LoadProgress } from "../commands/chat.js";
import { resolveSetting } from "../settings/resolve.js";
import { intFlag, numberFlag, parseCommandArgs } from "./args.js";
import { stdoutClosed } from "./stdout.js";
import { UsageError } from "./errors.js";
import { resolveModelArg } from "./model-arg.js";
import { ProgressLine } from "./progress.js";
import { RUNTIME_OPTIONS, loadRuntimeModel, resolveRuntime, type Runtime, type RuntimeFlags } from "./runtime.js";

const HELP = `usage: kvzap chat [FILES...] [options]

Chat with a model about documents (PDF, .txt, .md). The documents go into the context first; then ask away.
On a terminal this opens the chat screen; with --prompt, or when stdin or stdout is not a terminal, the answer to
one question streams to stdout (the question comes from --prompt, else from stdin).

  FILES               documents to put into the context (several allowed)
  --model M           a GGUF path, hf:user/repo:quant, or an http(s) URL
                      (default: KVZAP_MODEL, then \`kvzap config set model\`)
  -p, --prompt TEXT   ask this one question, print the answer and exit
  --system TEXT       a system prompt
  -n, --max-tokens N  tokens per answer at most (default: the maxTokens setting, 1024)
  --temp T            temperature; 0 = greedy (default 0.8)
  --seed S            sampling seed (default: random)
  --ctx N             most positions the session may hold (default: the model's training context;
                      with --kv full, at most 8192)
  --batch N           prompt batch size (default 512)
  --threads N         CPU threads (default: all cores)
  --gpu-layers N      layers on the GPU; -1 = all (default -1; a CPU build ignores it)
  --cache-dir D       where downloaded models are kept
  --json              print {answer, stats} as JSON (one question, no chat screen)

In the chat screen: Enter sends, ↑/↓ recall earlier questions, Ctrl-C stops an answer (twice at the prompt: exit),
/help lists the commands (/clear, /stats, /save FILE, /kv, /exit).`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    prompt: { type: "string", short: "p" },
    system: { type: "string" },
    ...RUNTIME_OPTIONS,
    "max-tokens": { type: "string", short: "n" },
    temp: { type: "string" },
    seed: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    process.stdout.write(HELP + "\n");
    return 0;
  }
  const config: ChatConfig = {
    system: values.system?.trim() ? values.system : undefined,
    maxTokens: resolveSetting("maxTokens", values["max-tokens"]).value,
    sampling: {
      temperature: numberFlag(values.temp, "temp", 0, 100) ?? 0.8,
      seed: intFlag(values.seed, "seed", 0, 0xffffffff),
    },
  };
  const runtime = resolveRuntime(values);
  const files = positionals;
  const interactive = values.prompt === undefined && !values.json && Boolean(process.stdin.isTTY) && Boolean(process.stdout.isTTY);
  if (!interactive) return plainChat(runtime, values, files, config, { prompt: values.prompt, json: Boolean(values.json) });

  // A download prints its own progress line; do it before the chat screen takes the terminal.
  const local = await resolveModelArg(runtime.modelSpec, values["cache-dir"]);
  const { runChatTui } = await import("../tui/run-chat.js");
  return runChatTui({
    modelName: basename(local).replace(/\.gguf$/i, ""),
    open: (onProgress, signal) =>
      openConversation({
        files,
        loadModel: (onFraction) => loadRuntimeModel({ ...runtime, modelSpec: local }, values, onFraction, signal),
        session: runtime.session,
        config,
        prefill: true,
        onProgress,
        signal,
      }),
  });
}

async function plainChat(runtime: Runtime, flags: RuntimeFlags, files: string[], config: ChatConfig, o: { prompt?: string; json: boolean }): Promise<number> {
  let question = o.prompt;
  if (question === undefined) {
    if (process.stdin.isTTY) process.stderr.write("type your question, then Ctrl-D:\n");
    question = (await readStdin()).replace(/\s+$/, "");
  }
  if (question.trim() === "") throw new UsageError("no question: pass --prompt TEXT or write the question on stdin");

  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once("SIGINT", onSigint);
  stdoutClosed.addEventListener("abort", onSigint);
  const progress = new LoadProgressLines();
  let conversation: Conversation | undefined;
  try {
    conversation = await openConversation({
      files,
      loadModel: (onFraction) => loadRuntimeModel(runtime, flags, onFraction, controller.signal),
      session: runtime.session,
      config,
      onProgress: (p) => progress.update(p),
      signal: controller.signal,
    });
    progress.done();
    for (const w of conversation.loadWarnings()) process.stderr.write(`kvzap chat: warning: ${w}\n`);
    const turn = await conversation.ask(question, {
      signal: controller.signal,
      onText: o.json
        ? undefined
        : (t) => {
            progress.done();
            process.stdout.write(t);
          },
      onPromptProgress: (done, total) => progress.update({ phase: "evaluate", done, total }),
    });
    progress.done();
    if (o.json) process.stdout.write(JSON.stringify({ answer: turn.answer, stats: jsonStats(conversation, turn) }) + "\n");
    else process.stdout.write("\n");
    return turn.stopReason === "abort" ? 130 : 0;
  } finally {
    progress.done();
    process.off("SIGINT", onSigint);
    stdoutClosed.removeEventListener("abort", onSigint);
    await conversation?.close();
  }
}

function jsonStats(c: Conversation, turn: ChatTurn) {
  const s = turn.stats;
  const snap = c.snapshot();
  const round = (x: number) => Math.round(x * 100) / 100;
  return {
    promptTokens: s.promptTokens,
    reusedTokens: s.reusedTokens,
    generatedTokens: s.generatedTokens,
    promptTokensPerSecond: round(s.promptTokensPerSecond),
    decodeTokensPerSecond: round(s.decodeTokensPerSecond),
    promptMs: round(s.promptMs),
    decodeMs: round(s.decodeMs),
    stopReason: turn.stopReason,
    contextSize: snap.contextSize,
    contextUsed: snap.contextUsed,
    documentTokens: snap.documentTokens,
    documents: snap.documents.map((d) => ({ name: d.name, kind: d.kind, pages: d.pages ?? null, chars: d.chars, tokens: d.tokens })),
    kv: s.kv,
  };
}

/** Progress on stderr, only for a person watching a terminal: scripts get a clean stderr. */
class LoadProgressLines {
  private readonly enabled = Boolean(process.stderr.isTTY);
  private line: ProgressLine | null = null;
  private label = "";

  update(p: LoadProgress): void {
    if (!this.enabled) return;
    if (p.phase === "document") this.draw(`reading ${p.name}`, "count", p.page ?? 0, p.pages ?? 0);
    else if (p.phase === "model") this.draw("loading the model", "count", Math.round(p.fraction * 100), 100);
    else this.draw("evaluating the prompt (tokens)", "count", p.done, p.total);
  }

  done(): void {
    this.line?.done();
    this.line = null;
    this.label = "";
  }

  private draw(label: string, unit: "count", done: number, total: number): void {
    if (label !== this.label) {
      this.line?.done();
      this.line = new ProgressLine(label, unit);
      this.label = label;
    }
    this.line?.update(done, total);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString("utf8");
}
