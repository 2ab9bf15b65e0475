import { basename } from "node:path";
import { Conversation, openConversation, type ChatConfig, type ChatTurn, type LoadProgress } from "../commands/chat.js";
import { resolveSetting } from "../settings/resolve.js";
import { intFlag, numberFlag } from "./args.js";
import { defineCommand } from "./command.js";
import { KV_GROUP } from "./kv-args.js";
import { MAX_TOKENS_OPTION, MODEL_OPTION, RUNTIME_OPTIONS, SEED_OPTION, temperatureOption } from "./options.js";
import { UsageError } from "../base/errors.js";
import { exitCodeOf } from "./exit-codes.js";
import { stdoutClosed } from "./stdout.js";
import { resolveModelArg } from "./model-arg.js";
import { PhasedProgress } from "../base/progress.js";
import { StopSignals } from "../base/signals.js";
import { loadRuntimeModel, resolveRuntime, type Runtime, type RuntimeFlags } from "./runtime.js";

export const CHAT = defineCommand({
  name: "chat",
  usage: ["[FILES...] [options]"],
  description: `Chat with a model about documents (PDF, .txt, .md). The documents go into the context first; then ask away.
On a terminal this opens the chat screen; with --prompt, or when stdin or stdout is not a terminal, the answer to
one question streams to stdout (the question comes from --prompt, else from stdin).`,
  arguments: [["FILES", "documents to put into the context (several allowed)"]],
  groups: [
    {
      options: {
        ...MODEL_OPTION,
        prompt: { short: "p", value: "TEXT", help: "ask this one question, print the answer and exit" },
        system: { value: "TEXT", help: "a system prompt" },
        ...MAX_TOKENS_OPTION,
        temp: temperatureOption(0.8),
        ...SEED_OPTION,
        ...RUNTIME_OPTIONS,
        json: { type: "boolean", help: "print {answer, stats} as JSON (one question, no chat screen)" },
      },
    },
    KV_GROUP,
  ],
  notes: `In the chat screen: Enter sends, ↑/↓ recall earlier questions, Ctrl-C stops an answer (twice at the prompt: exit),
/help lists the commands (/clear, /stats, /save FILE, /kv, /exit).`,
});

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = CHAT.parse(argv);
  if (CHAT.printHelpIf(values)) return 0;
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
    exitCodeOf,
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

  const stop = new StopSignals({ signals: ["SIGINT"] });
  // A closed stdout (`kvzap chat --prompt … | head`) stops the answer as Ctrl-C does.
  const signal = AbortSignal.any([stop.signal, stdoutClosed]);
  const progress = new LoadProgressLines();
  let conversation: Conversation | undefined;
  try {
    conversation = await openConversation({
      files,
      loadModel: (onFraction) => loadRuntimeModel(runtime, flags, onFraction, signal),
      session: runtime.session,
      config,
      onProgress: (p) => progress.show(p),
      signal: signal,
    });
    progress.done();
    for (const w of conversation.loadWarnings()) process.stderr.write(`kvzap chat: warning: ${w}\n`);
    const turn = await conversation.ask(question, {
      signal: signal,
      onText: o.json
        ? undefined
        : (t) => {
            progress.done();
            process.stdout.write(t);
          },
      onPromptProgress: (done, total) => progress.show({ phase: "evaluate", done, total }),
    });
    progress.done();
    if (o.json) process.stdout.write(JSON.stringify({ answer: turn.answer, stats: jsonStats(conversation, turn) }) + "\n");
    else process.stdout.write("\n");
    return turn.stopReason === "abort" ? 130 : 0;
  } finally {
    progress.done();
    stop.dispose();
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
class LoadProgressLines extends PhasedProgress {
  constructor() {
    super(Boolean(process.stderr.isTTY));
  }

  show(p: LoadProgress): void {
    if (p.phase === "document") this.update(`reading ${p.name}`, p.page ?? 0, p.pages ?? 0);
    else if (p.phase === "model") this.update("loading the model", Math.round(p.fraction * 100), 100);
    else this.update("evaluating the prompt (tokens)", p.done, p.total);
  }
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString("utf8");
}
