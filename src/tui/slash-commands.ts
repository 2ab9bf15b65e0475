// The chat screen's slash commands, as data: one table that /help, Tab completion and dispatch all read.
import type { Conversation } from "../commands/chat.js";
import type { CommandHelp, HistoryEntry } from "./history.js";

export interface SlashContext {
  conversation: Conversation;
  /** Appends an entry to the transcript area. */
  print(entry: HistoryEntry): void;
  /** Shows or hides the KV memory panel; returns whether it is now shown. */
  toggleKvPanel(): boolean;
  exit(): void;
}

export interface SlashCommand extends CommandHelp {
  /** Allowed while an answer is being written (the others wait for it). */
  whileBusy?: boolean;
  /** Not echoed into the transcript (it prints nothing there). */
  quiet?: boolean;
  run(ctx: SlashContext, args: string): void | Promise<void>;
}

export const SLASH_COMMANDS: readonly SlashCommand[] = [
  {
    name: "help",
    help: "list these commands and the keys",
    whileBusy: true,
    run: (ctx) => ctx.print({ kind: "help", commands: SLASH_COMMANDS }),
  },
  {
    name: "clear",
    help: "forget the questions and answers; the documents stay in the context",
    run: async (ctx) => {
      await ctx.conversation.clear();
      const docs = ctx.conversation.documents;
      const kept = docs.length > 0 ? ` (kept ${docs.map((d) => d.name).join(", ")})` : "";
      ctx.print({ kind: "notice", tone: "info", text: `─── conversation cleared${kept} ───` });
    },
  },
  {
    name: "stats",
    help: "context, KV memory and speed of the last answer",
    whileBusy: true,
    run: (ctx) => ctx.print({ kind: "stats", snapshot: ctx.conversation.snapshot() }),
  },
  {
    name: "save",
    args: "FILE",
    help: "write the conversation (since the last /clear) as Markdown",
    run: async (ctx, args) => {
      const file = args.trim();
      if (!file) {
        ctx.print({ kind: "notice", tone: "error", text: "usage: /save FILE  (for example /save chat.md)" });
        return;
      }
      const written = await ctx.conversation.save(file);
      const n = ctx.conversation.turns.length;
      ctx.print({ kind: "notice", tone: "success", text: `saved ${n} ${n === 1 ? "turn" : "turns"} to ${written}` });
    },
  },
  {
    name: "kv",
    help: "show or hide the KV memory panel",
    whileBusy: true,
    quiet: true,
    run: (ctx) => {
      ctx.toggleKvPanel();
    },
  },
  {
    name: "exit",
    aliases: ["quit"],
    help: "leave the chat (so do Ctrl-D at an empty prompt and Ctrl-C twice)",
    whileBusy: true,
    quiet: true,
    run: (ctx) => ctx.exit(),
  },
];

export type ParsedInput =
  { kind: "question"; text: string } | { kind: "command"; command: SlashCommand; args: string } | { kind: "unknown"; name: string } | { kind: "empty" };

/** A question, a slash command with its arguments, or an unknown command. `//text` asks "/text". */
export function parseInput(raw: string, commands: readonly SlashCommand[] = SLASH_COMMANDS): ParsedInput {
  const text = raw.trim();
  if (text === "") return { kind: "empty" };
  if (text.startsWith("//")) return { kind: "question", text: text.slice(1) };
  if (!text.startsWith("/")) return { kind: "question", text };
  const m = /^\/(\S*)\s*([\s\S]*)$/.exec(text)!;
  const name = m[1].toLowerCase();
  const command = findCommand(name, commands);
  return command ? { kind: "command", command, args: m[2] } : { kind: "unknown", name: m[1] };
}

export function findCommand(name: string, commands: readonly SlashCommand[] = SLASH_COMMANDS): SlashCommand | undefined {
  return commands.find((c) => c.name === name || c.aliases?.includes(name));
}

/** Tab completion: the input with the command name completed when exactly one command starts with what was typed. */
export function completeCommand(input: string, commands: readonly SlashCommand[] = SLASH_COMMANDS): string | undefined {
  const m = /^\/(\S*)$/.exec(input);
  if (!m) return undefined;
  const matches = commands.filter((c) => c.name.startsWith(m[1].toLowerCase()));
  if (matches.length !== 1) return undefined;
  return `/${matches[0].name}${matches[0].args ? " " : ""}`;
}

/** `/save FILE` etc., for help texts. */
export function commandUsage(c: CommandHelp): string {
  return `/${c.name}${c.args ? ` ${c.args}` : ""}`;
}
