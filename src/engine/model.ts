// A loaded model: the typed facade over the addon's Model.
import os from "node:os";
import { InterruptedError, UserError } from "../base/errors.js";
import { loadAddon, type NativeModel, type NativeModelInfo } from "./addon.js";
import { checkGgufFile } from "./gguf.js";
import { Session, type SessionOptions } from "./session.js";

export interface LoadModelOptions {
  /** Layers to offload to the GPU; -1 = all. Ignored by a CPU build. Default: all on a GPU build, else 0. */
  gpuLayers?: number;
  useMmap?: boolean;
  onProgress?: (fraction: number) => void;
  /** Aborting it stops the load (at the next tensor) and frees what was loaded; load() rejects with LoadAbortedError. */
  signal?: AbortSignal;
}

/** A model load stopped by its signal (Ctrl-C): exit code 130. */
export class LoadAbortedError extends InterruptedError {
  constructor(file: string) {
    super(`the model load was aborted: ${file}`);
  }
}

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export class Model {
  readonly path: string;
  readonly info: NativeModelInfo;
  private native: NativeModel | null;
  /** Layers offloaded to a GPU as asked (-1: all; 0: none, or a CPU build). */
  readonly gpuLayers: number;
  private readonly sessions = new Set<Session>();

  private constructor(path: string, native: NativeModel, gpuLayers: number) {
    this.path = path;
    this.native = native;
    this.gpuLayers = gpuLayers;
    this.info = native.info();
  }

  /** Loads a local GGUF file (resolve `hf:` URIs first with resolveModel). Weights load off the main thread. */
  static async load(file: string, options: LoadModelOptions = {}): Promise<Model> {
    await checkGgufFile(file);
    const addon = loadAddon();
    const gpu = addon.systemInfo().backend === "cuda";
    const gpuLayers = options.gpuLayers ?? (gpu ? -1 : 0);
    const signal = options.signal;
    if (signal?.aborted) throw new LoadAbortedError(file);
    const load = addon.Model.load(file, { gpuLayers: gpuLayers < 0 ? 9999 : gpuLayers, useMmap: options.useMmap ?? true }, options.onProgress);
    const onAbort = () => load.abort();
    signal?.addEventListener("abort", onAbort);
    try {
      const native = await load.promise;
      return new Model(file, native, gpu ? gpuLayers : 0);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      if (signal?.aborted && /the model load was aborted/.test(why)) throw new LoadAbortedError(file);
      if (/not within the file bounds|failed to read|incomplete/.test(why)) {
        throw new UserError(`the GGUF file is truncated or corrupted: ${file} (${firstCause(why)})`);
      }
      if (/unknown model architecture/.test(why)) {
        throw new UserError(`this llama.cpp build does not support the model's architecture: ${file} (${firstCause(why)})`);
      }
      throw new UserError(`could not load the model ${file}: ${firstCause(why)}`);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  private get handle(): NativeModel {
    if (!this.native) throw new Error("the model has been disposed");
    return this.native;
  }

  get hasChatTemplate(): boolean {
    return this.info.chatTemplate !== null;
  }

  tokenize(text: string, options: { addSpecial?: boolean; parseSpecial?: boolean } = {}): number[] {
    return Array.from(this.handle.tokenize(text, options.addSpecial ?? true, options.parseSpecial ?? false));
  }

  detokenize(tokens: readonly number[], options: { removeSpecial?: boolean; unparseSpecial?: boolean } = {}): string {
    return this.handle.detokenize(Int32Array.from(tokens), options.removeSpecial ?? false, options.unparseSpecial ?? false);
  }

  /** The bytes of one token's text; a piece can end inside a multi-byte character. */
  tokenBytes(token: number): Buffer {
    return this.handle.tokenPiece(token, false);
  }

  isEndOfGeneration(token: number): boolean {
    return this.handle.isEog(token);
  }

  /**
   * Renders a conversation with the model's own chat template. Without a template (base models), a plain
   * transcript that base models continue sensibly.
   */
  formatChat(messages: ChatMessage[], addAssistantTurn = true): { text: string; templated: boolean } {
    const out = this.handle.applyChatTemplate(messages, addAssistantTurn);
    if (out !== null) return { text: out, templated: true };
    return { text: messages.map((m) => `${m.content}\n\n`).join(""), templated: false };
  }

  async createSession(options: SessionOptions = {}): Promise<Session> {
    const session = new Session(this, this.handle, {
      ...options,
      threads: options.threads ?? defaultThreads(),
    });
    this.sessions.add(session);
    session.onDispose(() => this.sessions.delete(session));
    return session;
  }

  /** Frees the weights now (and every session of this model). */
  dispose(): void {
    for (const s of [...this.sessions]) s.dispose();
    this.native?.dispose();
    this.native = null;
  }
}

export function defaultThreads(): number {
  return Math.max(1, os.availableParallelism());
}

function firstCause(message: string): string {
  // llama.cpp's log lines repeat the same failure at three levels; the first names the cause.
  return message.split("; ")[0].replace(/^[a-z_]+: (error loading model: )?/, "");
}
