import { useCallback, useEffect, useRef, useState } from "react";
import { ChatInterrupted, type ChatSnapshot, type ChatTurn, type Conversation, type LoadProgress } from "../../commands/chat.js";
import { errorMessage } from "../../base/errors.js";
import type { LiveAnswer } from "../components/live-turn.js";

/** Opens the conversation (documents, model, evaluation), reporting progress; the signal cancels it. */
export type ConversationOpener = (onProgress: (p: LoadProgress) => void, signal: AbortSignal) => Promise<Conversation>;

export type ChatPhase = "loading" | "ready" | "answering" | "failed";

export interface ChatSessionEvents {
  onReady?: (conversation: Conversation, loadMs: number) => void;
  onTurn?: (turn: ChatTurn) => void;
  onAskError?: (message: string) => void;
}

export interface ChatSessionState {
  phase: ChatPhase;
  progress: LoadProgress | null;
  /** When the current loading phase began, and the progress it began at (for rates and time left). */
  phaseStart: { at: number; done: number };
  conversation: Conversation | null;
  live: LiveAnswer | null;
  snapshot: ChatSnapshot | null;
  /** Why loading failed, and the exit code for it (130 when cancelled). */
  /** Why loading failed: the error (for the exit code), or cancelled by the user. */
  failure: { message: string; cancelled: boolean; error: unknown } | null;
}

export interface ChatSession extends ChatSessionState {
  ask(question: string): void;
  /** Stops the answer being written, or cancels loading; false when nothing runs. */
  abort(): boolean;
  /** Runs `fn` with the conversation, then refreshes the snapshot (for slash commands). */
  run(fn: (c: Conversation) => void | Promise<void>): Promise<void>;
  refresh(): void;
}

/** Streamed text reaches the screen at most this often; tokens come much faster than a terminal should redraw. */
const FLUSH_MS = 50;

/**
 * The conversation as UI state: loading with progress, the answer being written, the latest stats. Finished turns go
 * out through `events.onTurn` (the container appends them to the transcript).
 */
export function useChatSession(open: ConversationOpener, events: ChatSessionEvents = {}): ChatSession {
  const [state, setState] = useState<ChatSessionState>({
    phase: "loading",
    progress: null,
    phaseStart: { at: Date.now(), done: 0 },
    conversation: null,
    live: null,
    snapshot: null,
    failure: null,
  });
  const eventsRef = useRef(events);
  eventsRef.current = events;
  const loadController = useRef<AbortController | null>(null);
  const conversationRef = useRef<Conversation | null>(null);
  const busy = useRef(false);

  useEffect(() => {
    const controller = new AbortController();
    loadController.current = controller;
    const started = Date.now();
    let lastPhase = "";
    open((p) => {
      if (controller.signal.aborted) return;
      const key = p.phase === "document" ? `document:${p.index}` : p.phase;
      const start = key !== lastPhase ? { at: Date.now(), done: p.phase === "evaluate" ? p.done : 0 } : null;
      lastPhase = key;
      setState((s) => ({ ...s, progress: p, phaseStart: start ?? s.phaseStart }));
    }, controller.signal).then(
      (conversation) => {
        if (controller.signal.aborted) return;
        conversationRef.current = conversation;
        loadController.current = null;
        setState((s) => ({ ...s, phase: "ready", progress: null, conversation, snapshot: conversation.snapshot() }));
        eventsRef.current.onReady?.(conversation, Date.now() - started);
      },
      (e: unknown) => {
        loadController.current = null;
        const cancelled = e instanceof ChatInterrupted || controller.signal.aborted;
        setState((s) => ({ ...s, phase: "failed", progress: null, failure: { message: cancelled ? "cancelled" : errorMessage(e), cancelled, error: e } }));
      },
    );
    return () => controller.abort();
    // The opener runs once per mounted screen.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  const refresh = useCallback(() => {
    const c = conversationRef.current;
    if (c) setState((s) => ({ ...s, snapshot: c.snapshot() }));
  }, []);

  const ask = useCallback((question: string) => {
    const c = conversationRef.current;
    if (!c || busy.current) return;
    busy.current = true;
    const live: LiveAnswer = { question, text: "", pieces: 0, promptDone: 0, promptTotal: 0, startedAt: Date.now(), stopping: false };
    let pending = { text: "", pieces: 0, promptDone: 0, promptTotal: 0 };
    let timer: NodeJS.Timeout | null = null;
    const flush = () => {
      timer = null;
      const p = pending;
      // the snapshot too, so that the status bar and the KV panel follow the memory while the answer is written
      const snapshot = c.snapshot();
      setState((s) =>
        s.live
          ? {
              ...s,
              snapshot,
              live: { ...s.live, text: s.live.text + p.text, pieces: s.live.pieces + p.pieces, promptDone: p.promptDone, promptTotal: p.promptTotal },
            }
          : s,
      );
      pending = { text: "", pieces: 0, promptDone: p.promptDone, promptTotal: p.promptTotal };
    };
    const schedule = () => {
      if (!timer) timer = setTimeout(flush, FLUSH_MS);
    };
    setState((s) => ({ ...s, phase: "answering", live }));
    c.ask(question, {
      onText: (t) => {
        pending.text += t;
        pending.pieces++;
        schedule();
      },
      onPromptProgress: (done, total) => {
        pending.promptDone = done;
        pending.promptTotal = total;
        schedule();
      },
    }).then(
      (turn) => {
        if (timer) clearTimeout(timer);
        busy.current = false;
        // One update: the live answer leaves and the finished turn joins the transcript in the same frame.
        setState((s) => ({ ...s, phase: "ready", live: null, snapshot: c.snapshot() }));
        eventsRef.current.onTurn?.(turn);
      },
      (e: unknown) => {
        if (timer) clearTimeout(timer);
        busy.current = false;
        setState((s) => ({ ...s, phase: "ready", live: null, snapshot: c.snapshot() }));
        eventsRef.current.onAskError?.(errorMessage(e));
      },
    );
  }, []);

  const abort = useCallback(() => {
    if (loadController.current) {
      loadController.current.abort();
      return true;
    }
    const c = conversationRef.current;
    if (!c || !busy.current) return false;
    c.abort();
    setState((s) => (s.live ? { ...s, live: { ...s.live, stopping: true } } : s));
    return true;
  }, []);

  const run = useCallback(
    async (fn: (c: Conversation) => void | Promise<void>) => {
      const c = conversationRef.current;
      if (!c) return;
      try {
        await fn(c);
      } finally {
        refresh();
      }
    },
    [refresh],
  );

  return { ...state, ask, abort, run, refresh };
}
