// What the transcript area shows: entries are appended once and rendered once (Ink <Static>), never changed.
import type { ChatDocument, ChatSnapshot, ChatTurn } from "../commands/chat.js";

export type NoticeTone = "info" | "success" | "warning" | "error";

export interface CommandHelp {
  name: string;
  args?: string;
  help: string;
  aliases?: readonly string[];
}

export type HistoryEntry =
  | { kind: "banner"; modelName: string; version?: string }
  | { kind: "documents"; documents: readonly ChatDocument[]; promptTokens: number; contextSize: number; ms: number }
  | { kind: "turn"; turn: ChatTurn; modelName: string }
  | { kind: "notice"; text: string; tone: NoticeTone }
  /** A slash command as typed, echoed before what it prints. */
  | { kind: "command"; text: string }
  | { kind: "help"; commands: readonly CommandHelp[] }
  | { kind: "stats"; snapshot: ChatSnapshot };

export type HistoryItem = HistoryEntry & { id: number };
