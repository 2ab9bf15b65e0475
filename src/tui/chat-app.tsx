// The chat screen: the container that owns the screen's state. Finished entries go to <Static> (written once, then
// left to the terminal's scrollback); only the answer being written, the input line and the status bar re-render.
import { Box, Static, Text, useApp, useInput, useStdout, type Key } from "ink";
import { useCallback, useEffect, useRef, useState } from "react";
import type { Conversation } from "../commands/chat.js";
import type { KvStats } from "../engine/session.js";
import { errorMessage } from "../base/errors.js";
import { HistoryView } from "./components/history-view.js";
import { InputLine } from "./components/input-line.js";
import { KvPanel } from "./components/kv-panel.js";
import { LiveTurn } from "./components/live-turn.js";
import { LoadProgressView } from "./components/load-progress.js";
import { StatusBar } from "./components/status-bar.js";
import { formatInt } from "./format.js";
import type { HistoryEntry, HistoryItem } from "./history.js";
import { useChatSession, type ConversationOpener } from "./hooks/use-chat-session.js";
import { useExitGuard } from "./hooks/use-exit-guard.js";
import { useInputHistory } from "./hooks/use-input-history.js";
import { useLatest } from "./hooks/use-latest.js";
import { useLineEditor } from "./hooks/use-line-editor.js";
import { SIGNAL_EXIT_CODE } from "../base/signals.js";
import { useNow } from "./hooks/use-now.js";
import { useTerminalSize } from "./hooks/use-terminal-size.js";
import { completeCommand, parseInput } from "./slash-commands.js";

export interface ChatAppProps {
  open: ConversationOpener;
  modelName: string;
  /** Earlier questions for ↑ (oldest first). */
  initialHistory?: readonly string[];
  /** The exit code for a failed load (the CLI's map of error kinds; default 1). */
  exitCodeOf?: (e: unknown) => number;
}

/** A resize is redrawn once it has stopped changing for this long (a dragged window sends many). */
const RESIZE_SETTLE_MS = 120;

/** Rows the screen keeps for itself below a streaming answer: spinner, input line, status bar. */
const CHROME_ROWS = 7;

export function ChatApp({ open, modelName, initialHistory, exitCodeOf = () => 1 }: ChatAppProps) {
  const { exit } = useApp();
  const { columns, rows } = useTerminalSize();
  const redraws = useCleanRedraw(columns, rows);

  const [items, setItems] = useState<HistoryItem[]>(() => [{ id: 0, kind: "banner", modelName }]);
  const nextId = useRef(1);
  const print = useCallback((entry: HistoryEntry) => setItems((xs) => [...xs, { ...entry, id: nextId.current++ }]), []);

  const [kvOpen, setKvOpen] = useState(false);
  const [flash, setFlash] = useState<string | null>(null);
  const [leaving, setLeaving] = useState<number | null>(null);
  const [queued, setQueued] = useState<string | null>(null);
  const editor = useLineEditor();
  // The editor's functions are stable; only its line changes with each key.
  const { value: lineValue, set: setLine, clear: clearLine, handle: editKey } = editor;
  const inputHistory = useInputHistory(initialHistory);
  const guard = useExitGuard();

  const chat = useChatSession(open, {
    onReady: (c, ms) => {
      const snap = c.snapshot();
      if (c.documents.length > 0) print({ kind: "documents", documents: c.documents, promptTokens: snap.contextUsed, contextSize: snap.contextSize, ms });
      for (const text of c.loadWarnings()) print({ kind: "notice", tone: "warning", text });
    },
    onTurn: (turn) => print({ kind: "turn", turn, modelName }),
    onAskError: (message) => print({ kind: "notice", tone: "error", text: message }),
  });
  const now = useNow(chat.phase === "loading" || chat.phase === "answering");
  const latest = useLatest({ chat, leaving, kvOpen, queued });

  const leave = useCallback((code: number) => setLeaving((l) => (l === null ? code : l)), []);
  // Exit after the goodbye frame has rendered, so it is what stays on the terminal.
  useEffect(() => {
    if (leaving !== null) exit(leaving);
  }, [leaving, exit]);
  useEffect(() => {
    if (chat.phase === "failed" && chat.failure) leave(chat.failure.cancelled ? SIGNAL_EXIT_CODE.SIGINT : exitCodeOf(chat.failure.error));
  }, [chat.phase, chat.failure, leave, exitCodeOf]);

  // What was typed ahead while loading (a question or a command) runs once loading has finished, and the loading
  // hints go with it.
  const submitRef = useRef<(raw: string) => void>(() => undefined);
  useEffect(() => {
    if (chat.phase !== "ready") return;
    setFlash(null);
    if (queued !== null) {
      setQueued(null);
      submitRef.current(queued);
    }
  }, [chat.phase, queued]);

  const submit = useCallback(
    (raw: string, typedAhead = false) => {
      const { chat } = latest.current;
      // A line typed ahead during loading is in the input history already.
      const remember = () => {
        if (!typedAhead) inputHistory.push(raw);
      };
      const parsed = parseInput(raw);
      if (parsed.kind === "empty") return;
      const busy = chat.phase === "answering";
      const loading = chat.phase === "loading";
      const refuse = () => {
        setLine(raw);
        setFlash(loading ? "one line is already waiting for loading to finish" : "an answer is being written: wait, or Ctrl-C to stop it");
      };
      // A question or a command typed while the documents load runs as soon as they are ready (one at a time: a
      // second waits on the line).
      if (loading) {
        if (latest.current.queued !== null) return refuse();
        remember();
        setQueued(raw);
        return;
      }
      if (parsed.kind === "unknown") {
        remember();
        print({
          kind: "notice",
          tone: "error",
          text: `unknown command /${parsed.name}: /help lists the commands (start with // to ask something that begins with /)`,
        });
        return;
      }
      if (parsed.kind === "command") {
        if (busy && !parsed.command.whileBusy) return refuse();
        remember();
        if (!parsed.command.quiet) print({ kind: "command", text: raw.trim() });
        const command = parsed.command;
        void chat
          .run((conversation: Conversation) =>
            command.run(
              {
                conversation,
                print,
                toggleKvPanel: () => {
                  const shown = !latest.current.kvOpen;
                  setKvOpen(shown);
                  return shown;
                },
                exit: () => leave(0),
              },
              parsed.args,
            ),
          )
          .catch((e: unknown) => print({ kind: "notice", tone: "error", text: errorMessage(e) }));
        return;
      }
      if (busy) return refuse();
      remember();
      chat.ask(parsed.text);
    },
    [setLine, inputHistory, latest, leave, print],
  );
  submitRef.current = (raw: string) => {
    // Typed ahead: already in the input history.
    const parsed = parseInput(raw);
    if (parsed.kind === "question") chat.ask(parsed.text);
    else submit(raw, true);
  };

  const onCtrlC = useCallback(() => {
    const { chat, leaving } = latest.current;
    if (leaving !== null) return;
    if (chat.phase === "loading" || chat.phase === "failed") {
      chat.abort();
      leave(chat.failure && !chat.failure.cancelled ? exitCodeOf(chat.failure.error) : SIGNAL_EXIT_CODE.SIGINT);
      return;
    }
    if (chat.phase === "answering") {
      guard.disarm();
      chat.abort();
      return;
    }
    if (lineValue() !== "") {
      guard.disarm();
      clearLine();
      return;
    }
    if (guard.press()) leave(0);
  }, [lineValue, clearLine, guard, latest, leave, exitCodeOf]);

  const onKey = useCallback(
    (input: string, key: Key) => {
      // Two Ctrl-C in one read (a fast double press) arrive as one string of ETX characters.
      if ((key.ctrl && input === "c") || /^\x03+$/.test(input)) {
        const presses = key.ctrl ? 1 : input.length;
        for (let i = 0; i < presses; i++) onCtrlC();
        return;
      }
      const { chat, leaving } = latest.current;
      if (leaving !== null || chat.phase === "failed") return;
      guard.disarm();
      setFlash(null);
      if (key.ctrl && input === "d" && lineValue() === "") {
        leave(0);
        return;
      }
      if (key.upArrow) {
        const older = inputHistory.older(lineValue());
        if (older !== undefined) setLine(older);
        return;
      }
      if (key.downArrow) {
        const newer = inputHistory.newer();
        if (newer !== undefined) setLine(newer);
        return;
      }
      if (key.tab) {
        const completed = completeCommand(lineValue());
        if (completed) setLine(completed);
        return;
      }
      if (key.escape && chat.phase === "answering") {
        chat.abort();
        return;
      }
      const r = editKey(input, key);
      if (r.kind === "submit") submit(r.state.value);
    },
    [editKey, lineValue, setLine, guard, inputHistory, latest, leave, onCtrlC, submit],
  );
  useInput(onKey);

  const snap = chat.snapshot;
  const kv = snap?.kv ?? null;
  const panelRows = kvOpen && kv ? kvPanelRows(kv) : 0;
  const documents = chat.conversation?.documents ?? [];
  const placeholder =
    documents.length === 0
      ? "Ask anything · /help for commands"
      : `Ask about ${documents.length === 1 ? documents[0].name : `${documents.length} documents`} · /help for commands`;

  let hint = "/help for commands";
  let hintTone: "dim" | "warning" = "dim";
  if (chat.phase === "loading") hint = "Ctrl-C cancels";
  else if (chat.phase === "failed") hint = "";
  else if (guard.armed) {
    hint = "press Ctrl-C again to exit";
    hintTone = "warning";
  } else if (flash) {
    hint = flash;
    hintTone = "warning";
  } else if (chat.phase === "answering") hint = chat.live?.stopping ? "stopping…" : "Ctrl-C stops the answer";

  return (
    <Box flexDirection="column">
      {/* The width holds every entry to the terminal's: a row that cannot shrink would widen the transcript. */}
      <Static key={redraws} items={items}>
        {(item) => (
          <Box key={item.id} width={columns} flexDirection="column">
            <HistoryView entry={item} />
          </Box>
        )}
      </Static>
      {chat.phase === "loading" ? (
        <LoadProgressView
          progress={chat.progress}
          modelName={modelName}
          phaseStartedAt={chat.phaseStart.at}
          phaseStartedDone={chat.phaseStart.done}
          now={now}
        />
      ) : null}
      {queued !== null && chat.phase === "loading" ? (
        <Text dimColor>
          {"› "}
          {queued}
          {queued.trim().startsWith("/") && !queued.trim().startsWith("//") ? "  (runs when loading has finished)" : "  (asked when loading has finished)"}
        </Text>
      ) : null}
      {chat.failure ? (
        <Text color={chat.failure.cancelled ? "yellow" : "red"}>{chat.failure.cancelled ? "cancelled" : `✗ ${chat.failure.message}`}</Text>
      ) : null}
      {chat.live ? <LiveTurn live={chat.live} columns={columns} maxRows={rows - CHROME_ROWS - panelRows} now={now} /> : null}
      {kvOpen && kv && snap && leaving === null ? (
        <KvPanel kv={kv} kvBudget={snap.kvBudget} contextUsed={snap.contextUsed} contextSize={snap.contextSize} width={columns} />
      ) : null}
      {leaving !== null && !chat.failure ? <Goodbye answers={items.filter((i) => i.kind === "turn").length} /> : null}
      {leaving === null && chat.phase !== "failed" ? (
        <InputLine
          line={editor.line}
          placeholder={chat.phase === "loading" ? "type ahead: what you enter runs once loading has finished" : placeholder}
          waiting={chat.phase !== "ready"}
        />
      ) : null}
      <StatusBar
        modelName={modelName}
        contextUsed={snap?.contextUsed ?? 0}
        contextSize={snap?.contextSize ?? 0}
        kv={kv}
        kvBudget={snap?.kvBudget ?? null}
        width={columns}
        tokensPerSecond={snap?.last ? snap.last.stats.decodeTokensPerSecond : null}
        hint={leaving !== null ? "" : hint}
        hintTone={hintTone}
      />
    </Box>
  );
}

/**
 * A resize leaves the terminal's old lines re-wrapped at the new width, where Ink cannot erase them (it erases the
 * rows its last frame took at the old width): stale pieces of the status bar and the input stay on screen. After a
 * resize settles, the screen is cleared and the transcript is written again at the new width; the returned count
 * remounts <Static> so that it does.
 */
function useCleanRedraw(columns: number, rows: number): number {
  const { stdout } = useStdout();
  const [redraws, setRedraws] = useState(0);
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    const timer = setTimeout(() => {
      if (stdout.isTTY) stdout.write("\x1b[2J\x1b[3J\x1b[H");
      setRedraws((n) => n + 1);
    }, RESIZE_SETTLE_MS);
    return () => clearTimeout(timer);
  }, [columns, rows, stdout]);
  return redraws;
}

function Goodbye({ answers }: { answers: number }) {
  return <Text dimColor>{answers === 0 ? "bye" : `bye · ${formatInt(answers)} ${answers === 1 ? "answer" : "answers"} this session`}</Text>;
}

/** Rows the KV panel takes (borders, four lines and the dropped line, the per-layer part). */
function kvPanelRows(kv: KvStats): number {
  const layers = kv.layers?.length ?? 0;
  return 6 + (kv.evicted !== undefined ? 1 : 0) + (layers === 0 ? 0 : layers <= 12 ? layers : 6);
}
