// A conversation about documents, without React: the TUI and the plain (scripted) mode both drive it.
//
// The context always holds one rendering of the whole conversation through the model's chat template: the documents
// (each wrapped with its file name) followed by the first question form the first user turn. Every turn re-renders
// everything; the session reuses the longest common prefix already in memory, so a turn only evaluates what is new.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { InterruptedError, UserError } from "../base/errors.js";
import { loadDocument, type DocumentKind } from "../documents/index.js";
import type { ChatMessage, Model } from "../engine/model.js";
import {
  PromptTooLongError,
  type GenerationStats,
  type KvStats,
  type SamplingOptions,
  type Session,
  type SessionOptions,
  type StopReason,
} from "../engine/session.js";

export interface ChatDocument {
  path: string;
  name: string;
  kind: DocumentKind;
  pages?: number;
  chars: number;
  text: string;
  /** The document's own text in tokens (without its header). */
  tokens: number;
}

export interface ChatTurn {
  question: string;
  answer: string;
  /** "abort" = interrupted by the user; the partial answer is kept and stays in the context. */
  stopReason: StopReason;
  stats: GenerationStats;
  /** Older turns that no longer fitted the context and were left out of this turn's prompt (still in the transcript). */
  droppedTurns: number;
  at: Date;
}

export interface ChatConfig {
  system?: string;
  maxTokens: number;
  sampling: SamplingOptions;
}

export interface ChatSnapshot {
  modelName: string;
  modelPath: string;
  contextSize: number;
  trainedContext: number;
  /** Tokens held in the context right now. */
  contextUsed: number;
  kv: KvStats;
  /** The KV budget in bytes (--kv-budget), or null when none is set. */
  kvBudget: number | null;
  documents: readonly ChatDocument[];
  /** The documents-only prompt (template, headers and all), in tokens; 0 without documents. */
  documentTokens: number;
  turns: number;
  last: ChatTurn | null;
}

export type LoadProgress =
  | { phase: "document"; name: string; index: number; count: number; page?: number; pages?: number }
  | { phase: "model"; fraction: number }
  | { phase: "evaluate"; done: number; total: number; kv?: { policy: string; bytesInUse: number; bytesFullEquivalent: number } };

/** Room left for a question and an answer when checking that the documents fit. */
const MIN_ROOM = 64;
/** An answer is given at least this much room (or --max-tokens, if smaller) before older turns are left out. */
const ANSWER_ROOM = 256;
const QUESTION_MARK = "\u27e6kvzap:question\u27e7";

/** The smallest power-of-two context that holds `tokens` plus a question and an answer. */
export function contextThatFits(tokens: number): number {
  return Math.pow(2, Math.ceil(Math.log2(tokens + MIN_ROOM + ANSWER_ROOM)));
}

/** The documents do not fit the context: says how many tokens they need and which --ctx would hold them. */
export class DocumentsTooLongError extends UserError {
  readonly fitContext: number;
  constructor(
    readonly promptTokens: number,
    readonly contextSize: number,
    readonly trainedContext: number,
    documents: readonly ChatDocument[],
  ) {
    const fit = contextThatFits(promptTokens);
    const what =
      documents.length === 1
        ? `${documents[0].name} needs ${fmt(promptTokens)} tokens`
        : `the documents need ${fmt(promptTokens)} tokens (${documents.map((d) => `${d.name} ${fmt(d.tokens)}`).join(", ")})`;
    const beyond =
      trainedContext > 0 && fit > trainedContext ? ` (more than the ${fmt(trainedContext)} tokens the model was trained for: expect weaker answers)` : "";
    super(`${what} but the context holds ${fmt(contextSize)}; run with --ctx ${fit} or more${beyond}`);
    this.fitContext = fit;
  }
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

/** The text of the documents as the first user turn carries them. */
export function documentsBlock(documents: readonly Pick<ChatDocument, "name" | "text">[]): string {
  return documents.map((d) => `<document name="${d.name.replace(/"/g, "'")}">\n${d.text.trim()}\n</document>`).join("\n\n");
}

/** The conversation as chat messages: system prompt, then documents + first question, then the turns. */
export function buildMessages(
  documents: readonly Pick<ChatDocument, "name" | "text">[],
  turns: readonly Pick<ChatTurn, "question" | "answer">[],
  question: string | null,
  system?: string,
): ChatMessage[] {
  const messages: ChatMessage[] = [];
  if (system) messages.push({ role: "system", content: system });
  const docs = documents.length > 0 ? documentsBlock(documents) : "";
  const userContent = (q: string, first: boolean) => (first && docs ? `${docs}\n\n${q}` : q);
  turns.forEach((t, i) => {
    messages.push({ role: "user", content: userContent(t.question, i === 0) });
    messages.push({ role: "assistant", content: t.answer });
  });
  if (question !== null) messages.push({ role: "user", content: userContent(question, turns.length === 0) });
  return messages;
}

export async function loadChatDocuments(
  files: readonly string[],
  options: { onProgress?: (p: LoadProgress) => void; signal?: AbortSignal } = {},
): Promise<Omit<ChatDocument, "tokens">[]> {
  const out: Omit<ChatDocument, "tokens">[] = [];
  for (const [index, file] of files.entries()) {
    throwIfAborted(options.signal);
    const name = path.basename(file);
    options.onProgress?.({ phase: "document", name, index, count: files.length });
    const doc = await loadDocument(file, {
      onProgress: (p) => options.onProgress?.({ phase: "document", name, index, count: files.length, page: p.page, pages: p.pages }),
    });
    out.push({ path: doc.path, name: doc.name, kind: doc.kind, pages: doc.pages, chars: doc.chars, text: doc.text });
  }
  return out;
}

export class ChatInterrupted extends InterruptedError {
  constructor() {
    super("interrupted");
  }
}

function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new ChatInterrupted();
}

export interface AskOptions {
  signal?: AbortSignal;
  onText?: (text: string) => void;
  onPromptProgress?: (done: number, total: number) => void;
}

export class Conversation {
  readonly model: Model;
  readonly session: Session;
  readonly documents: readonly ChatDocument[];
  readonly config: ChatConfig;
  readonly modelName: string;
  private history: ChatTurn[] = [];
  /** Turns before this index no longer fit the context and are left out of the prompt. */
  private firstInContext = 0;
  private running: { controller: AbortController; done: Promise<unknown> } | null = null;
  private closed = false;
  private docPrompt: number[] | null | undefined;
  /**
   * The text and tokens of the last prompt with its answer, as memory holds them. The next turn's rendering starts
   * with this text; its tokens are reused as they are, because tokenizing the answer's text again can give other
   * tokens than the ones sampled (and every token after the first difference would be evaluated again).
   */
  private lastExchange: { text: string; tokens: number[]; firstTurn: number } | null = null;

  constructor(model: Model, session: Session, documents: readonly Omit<ChatDocument, "tokens">[], config: ChatConfig) {
    this.model = model;
    this.session = session;
    this.config = config;
    this.modelName = path.basename(model.path).replace(/\.gguf$/i, "");
    this.documents = documents.map((d) => ({ ...d, tokens: model.tokenize(d.text, { addSpecial: false }).length }));
  }

  get turns(): readonly ChatTurn[] {
    return this.history;
  }

  get busy(): boolean {
    return this.running !== null;
  }

  /** Tokens of the documents-only prompt: what the context holds before any question (null without documents). */
  documentsPrompt(): number[] | null {
    if (this.docPrompt === undefined) this.docPrompt = this.renderDocumentsPrompt();
    return this.docPrompt;
  }

  private renderDocumentsPrompt(): number[] | null {
    if (this.documents.length === 0) return null;
    const { text, templated } = this.model.formatChat(buildMessages(this.documents, [], QUESTION_MARK, this.config.system), true);
    const cut = text.indexOf(QUESTION_MARK);
    // A template that does not render the user's text verbatim: nothing can be evaluated ahead of the question.
    if (cut < 0) return null;
    return this.tokenize(text.slice(0, cut), templated);
  }

  /** Throws DocumentsTooLongError when the documents leave no room for a question in the context. */
  checkFits(): void {
    const tokens = this.documentsPrompt();
    if (tokens && tokens.length + MIN_ROOM > this.session.contextSize) {
      throw new DocumentsTooLongError(tokens.length, this.session.contextSize, this.model.info.contextLength, this.documents);
    }
  }

  /**
   * What a person should hear when the conversation opens: the context was rounded or exceeds the training, or the
   * documents leave too little room to answer (an answer would stop at "the context is full"), with what to do.
   */
  loadWarnings(): string[] {
    const warnings = [...this.session.notes];
    const docTokens = this.documentsPrompt()?.length ?? 0;
    const left = this.session.contextSize - docTokens;
    const answer = Math.min(this.config.maxTokens, ANSWER_ROOM);
    if (docTokens > 0 && left < MIN_ROOM + answer) {
      warnings.push(
        `the documents fill ${fmt(docTokens)} of the ${fmt(this.session.contextSize)} tokens of the context: ${fmt(left)} are left for ` +
          `a question and its answer, so answers will stop early; run with --ctx ${contextThatFits(docTokens)} (or with fewer documents)`,
      );
    }
    return warnings;
  }

  /** Evaluates the documents now, so that the first answer starts at once; later turns reuse these tokens. */
  async prefill(options: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {}): Promise<{ tokens: number; ms: number }> {
    const tokens = this.documentsPrompt();
    if (!tokens) return { tokens: 0, ms: 0 };
    this.checkFits();
    const r = await this.track(options.signal, (signal) => this.session.setPrompt(tokens, { signal, onProgress: options.onProgress }));
    if (r.aborted) throw new ChatInterrupted();
    return { tokens: tokens.length, ms: r.ms };
  }

  /** Asks one question; the answer streams through onText. An interrupted answer is kept (stopReason "abort"). */
  async ask(question: string, options: AskOptions = {}): Promise<ChatTurn> {
    if (this.closed) throw new Error("the conversation is closed");
    const room = Math.min(this.config.maxTokens, ANSWER_ROOM);
    let first = this.firstInContext;
    let prompt = this.render(first, question);
    while (prompt.length + room > this.session.contextSize && first < this.history.length) {
      first++;
      prompt = this.render(first, question);
    }
    if (prompt.length >= this.session.contextSize) {
      const e = new PromptTooLongError(prompt.length, this.session.contextSize, this.model.info.contextLength);
      throw new UserError(
        this.documents.length > 0
          ? `the documents and this question need ${fmt(prompt.length)} tokens but the context holds ${fmt(this.session.contextSize)}; run with --ctx ${contextThatFits(prompt.length)} or more`
          : e.message,
      );
    }
    const dropped = first - this.firstInContext;
    const result = await this.track(options.signal, (signal) =>
      this.session.generate(prompt, {
        ...this.config.sampling,
        maxTokens: this.config.maxTokens,
        signal,
        onText: options.onText,
        onPromptProgress: options.onPromptProgress,
      }),
    );
    this.firstInContext = first;
    const turn: ChatTurn = { question, answer: result.text, stopReason: result.stopReason, stats: result.stats, droppedTurns: dropped, at: new Date() };
    this.lastExchange = { text: this.lastRenderedText + result.text, tokens: [...prompt, ...result.tokens], firstTurn: first };
    this.history.push(turn);
    return turn;
  }

  /** Stops the running evaluation or answer, if any; true when there was one. */
  abort(): boolean {
    if (!this.running) return false;
    this.running.controller.abort();
    return true;
  }

  /**
   * Forgets the questions and answers but keeps the documents: the context goes back to the documents-only prompt,
   * whose tokens are still in memory, so this is instant.
   */
  async clear(): Promise<void> {
    this.history = [];
    this.lastExchange = null;
    this.firstInContext = 0;
    const tokens = this.documentsPrompt();
    if (tokens) await this.track(undefined, (signal) => this.session.setPrompt(tokens, { signal }));
    else this.session.clear();
  }

  snapshot(): ChatSnapshot {
    const docTokens = this.documentsPrompt()?.length ?? 0;
    return {
      modelName: this.modelName,
      modelPath: this.model.path,
      contextSize: this.session.contextSize,
      trainedContext: this.model.info.contextLength,
      contextUsed: this.session.tokens.length,
      kv: this.session.kvStats(),
      kvBudget: this.session.kv.policy === "full" ? null : (this.session.kv.budgetBytes ?? null),
      documents: this.documents,
      documentTokens: docTokens,
      turns: this.history.length,
      last: this.history.at(-1) ?? null,
    };
  }

  /** The conversation as Markdown. */
  transcript(): string {
    return transcriptMarkdown(this.modelName, this.documents, this.history, this.config.system);
  }

  /** Writes the transcript; returns the absolute path written. */
  async save(file: string): Promise<string> {
    const target = path.resolve(file);
    try {
      await writeFile(target, this.transcript(), "utf8");
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const why =
        code === "ENOENT"
          ? "no such folder"
          : code === "EACCES" || code === "EPERM"
            ? "permission denied"
            : code === "EISDIR"
              ? "is a folder"
              : (e as Error).message;
      throw new UserError(`could not save the transcript to ${file}: ${why}`);
    }
    return target;
  }

  /** Stops what runs, waits for it, and frees the model (and the context with it). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const running = this.running;
    if (running) {
      running.controller.abort();
      await running.done.catch(() => undefined);
    }
    this.model.dispose();
  }

  /** The text of the prompt `render` returned last. */
  private lastRenderedText = "";

  private render(firstTurn: number, question: string): number[] {
    const { text, templated } = this.model.formatChat(buildMessages(this.documents, this.history.slice(firstTurn), question, this.config.system), true);
    this.lastRenderedText = text;
    const last = this.lastExchange;
    if (last !== null && last.firstTurn === firstTurn && text.startsWith(last.text)) {
      // The answer's tokens as sampled, then only the end of its turn and the new question.
      return [...last.tokens, ...this.model.tokenize(text.slice(last.text.length), { addSpecial: false, parseSpecial: templated })];
    }
    return this.tokenize(text, templated);
  }

  private tokenize(text: string, templated: boolean): number[] {
    const tokens = this.model.tokenize(text, { addSpecial: true, parseSpecial: templated });
    // Templates that write the BOS text themselves would otherwise get a second one from addSpecial.
    const bos = this.model.info.bos;
    if (tokens.length > 1 && tokens[0] === bos && tokens[1] === bos) tokens.shift();
    return tokens;
  }

  private async track<T>(outer: AbortSignal | undefined, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.running) throw new Error("the conversation is busy: wait for the answer to finish or interrupt it");
    const controller = new AbortController();
    const forward = () => controller.abort();
    if (outer?.aborted) controller.abort();
    outer?.addEventListener("abort", forward);
    const done = run(controller.signal);
    this.running = { controller, done };
    try {
      return await done;
    } finally {
      this.running = null;
      outer?.removeEventListener("abort", forward);
    }
  }
}

export interface OpenOptions {
  files: readonly string[];
  /** Loads the model (reporting the loaded fraction); the conversation owns and frees it. */
  loadModel: (onFraction: (fraction: number) => void) => Promise<Model>;
  session: SessionOptions;
  config: ChatConfig;
  /** Evaluate the documents before returning (the TUI does; a one-shot question does not need to). */
  prefill?: boolean;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
}

/** Reads the documents, loads the model, checks that the documents fit and (optionally) evaluates them. */
export async function openConversation(o: OpenOptions): Promise<Conversation> {
  const docs = await loadChatDocuments(o.files, { onProgress: o.onProgress, signal: o.signal });
  throwIfAborted(o.signal);
  const model = await o.loadModel((fraction) => o.onProgress?.({ phase: "model", fraction }));
  try {
    throwIfAborted(o.signal);
    const session = await model.createSession(o.session);
    const opened = new Conversation(model, session, docs, o.config);
    opened.checkFits();
    if (o.prefill) {
      await opened.prefill({
        signal: o.signal,
        // the KV memory as it grows (and, with KVzap, as pairs leave the window) while the documents are read
        onProgress: (done, total) => o.onProgress?.({ phase: "evaluate", done, total, kv: opened.snapshot().kv }),
      });
    }
    return opened;
  } catch (e) {
    model.dispose();
    throw e;
  }
}

export function transcriptMarkdown(modelName: string, documents: readonly ChatDocument[], turns: readonly ChatTurn[], system?: string): string {
  const lines: string[] = [`# kvzap chat with ${modelName}`, ""];
  lines.push(`- saved: ${new Date().toISOString()}`);
  for (const d of documents) lines.push(`- document: ${d.name} (${d.pages ? `${d.pages} pages, ` : ""}${fmt(d.tokens)} tokens)`);
  if (system) lines.push(`- system prompt: ${system.replace(/\s+/g, " ")}`);
  lines.push("");
  for (const t of turns) {
    lines.push("## You", "", t.question, "", `## ${modelName}`, "", t.answer.trim() || "_(no answer)_", "");
    const note = stopNote(t.stopReason);
    const s = t.stats;
    lines.push(`_${fmt(s.generatedTokens)} tokens, ${s.decodeTokensPerSecond.toFixed(1)} tokens/s${note ? `, ${note}` : ""}_`, "");
  }
  return lines.join("\n");
}

/** What a person should know about how an answer ended, or "" for a normal end. */
export function stopNote(reason: StopReason): string {
  switch (reason) {
    case "abort":
      return "interrupted";
    case "contextFull":
      return "stopped: the context is full";
    case "maxTokens":
      return "stopped at --max-tokens";
    default:
      return "";
  }
}
