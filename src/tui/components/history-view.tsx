import { Box, Text } from "ink";
import type { ChatSnapshot } from "../../commands/chat.js";
import { formatBytes, formatInt, formatMs, formatPercent, formatRate } from "../format.js";
import type { CommandHelp, HistoryEntry, NoticeTone } from "../history.js";
import { commandUsage } from "../slash-commands.js";
import { TurnView } from "./turn-view.js";

/** One transcript entry, rendered once. */
export function HistoryView({ entry }: { entry: HistoryEntry }) {
  switch (entry.kind) {
    case "banner":
      return <Banner modelName={entry.modelName} />;
    case "documents":
      return <DocumentsLoaded entry={entry} />;
    case "turn":
      return <TurnView turn={entry.turn} />;
    case "notice":
      return <Notice text={entry.text} tone={entry.tone} />;
    case "command":
      return (
        <Text dimColor>
          {"› "}
          {entry.text}
        </Text>
      );
    case "help":
      return <HelpView commands={entry.commands} />;
    case "stats":
      return <StatsView snapshot={entry.snapshot} />;
  }
}

function Banner({ modelName }: { modelName: string }) {
  return (
    <Box flexDirection="column" marginBottom={1}>
      <Text>
        <Text color="cyan" bold>
          kvzap chat
        </Text>
        <Text dimColor> · </Text>
        <Text bold>{modelName}</Text>
      </Text>
      <Text dimColor>Enter sends · ↑/↓ earlier questions · /help commands · Ctrl-C stops an answer, twice exits</Text>
    </Box>
  );
}

function DocumentsLoaded({ entry }: { entry: Extract<HistoryEntry, { kind: "documents" }> }) {
  return (
    <Box flexDirection="column" marginBottom={1}>
      {entry.documents.map((d, i) => (
        <Text key={i}>
          <Text color="green">✔ </Text>
          <Text bold>{d.name}</Text>
          <Text dimColor>
            {" "}
            · {d.pages ? `${d.pages} ${d.pages === 1 ? "page" : "pages"} · ` : ""}
            {formatInt(d.tokens)} tokens
          </Text>
        </Text>
      ))}
      <Text dimColor>
        {"  "}
        {formatInt(entry.promptTokens)} of {formatInt(entry.contextSize)} context tokens in use · ready in {formatMs(entry.ms)}
      </Text>
    </Box>
  );
}

const TONE_COLOR: Record<NoticeTone, string | undefined> = { info: undefined, success: "green", warning: "yellow", error: "red" };
const TONE_MARK: Record<NoticeTone, string> = { info: "", success: "✔ ", warning: "! ", error: "✗ " };

export function Notice({ text, tone }: { text: string; tone: NoticeTone }) {
  return (
    <Box marginBottom={1}>
      <Text color={TONE_COLOR[tone]} dimColor={tone === "info"}>
        {TONE_MARK[tone]}
        {text}
      </Text>
    </Box>
  );
}

function HelpView({ commands }: { commands: readonly CommandHelp[] }) {
  const width = Math.max(...commands.map((c) => commandUsage(c).length));
  const keys: [string, string][] = [
    ["Enter", "send the question"],
    ["↑ / ↓", "earlier questions"],
    ["← → Home End", "move in the line (also Ctrl-A/E, Alt-←/→ by word)"],
    ["Ctrl-U / Ctrl-K / Ctrl-W", "delete to the start / to the end / the word before"],
    ["Tab", "complete a command"],
    ["Ctrl-C / Esc", "stop the answer (Ctrl-C also clears the line; twice at an empty prompt: exit)"],
    ["Ctrl-D", "exit, at an empty prompt"],
  ];
  const kw = Math.max(...keys.map(([k]) => k.length));
  return (
    <Box flexDirection="column" marginBottom={1}>
      <Text bold>Commands</Text>
      {commands.map((c) => (
        <Text key={c.name}>
          {"  "}
          <Text color="cyan">{commandUsage(c).padEnd(width)}</Text>
          {"  "}
          {c.help}
          {c.aliases?.length ? <Text dimColor> (also {c.aliases.map((a) => `/${a}`).join(", ")})</Text> : null}
        </Text>
      ))}
      <Text bold>Keys</Text>
      {keys.map(([k, v]) => (
        <Text key={k}>
          {"  "}
          <Text color="cyan">{k.padEnd(kw)}</Text>
          {"  "}
          {v}
        </Text>
      ))}
    </Box>
  );
}

/** Rows of /stats, also used by tests. */
export function statsRows(s: ChatSnapshot): [string, string][] {
  const rows: [string, string][] = [
    ["model", `${s.modelName} (${s.modelPath})`],
    [
      "context",
      `${formatInt(s.contextUsed)} of ${formatInt(s.contextSize)} tokens (${formatPercent(s.contextSize ? s.contextUsed / s.contextSize : 0)}); trained for ${formatInt(s.trainedContext)}`,
    ],
  ];
  if (s.documents.length > 0) {
    rows.push(["documents", `${formatInt(s.documentTokens)} tokens: ${s.documents.map((d) => `${d.name} ${formatInt(d.tokens)}`).join(", ")}`]);
  }
  const saved = s.kv.bytesFullEquivalent > 0 ? 1 - s.kv.bytesInUse / s.kv.bytesFullEquivalent : 0;
  const savings = saved >= 0.005 ? `, saves ${formatPercent(saved)}` : "";
  rows.push([
    "KV memory",
    `${formatBytes(s.kv.bytesInUse)} in use, ${formatBytes(s.kv.bytesFullEquivalent)} for a full cache (policy ${s.kv.policy}${savings})`,
  ]);
  rows.push(["turns", String(s.turns)]);
  if (s.last) {
    const t = s.last.stats;
    rows.push(["last answer", `${formatInt(t.generatedTokens)} tokens at ${formatRate(t.decodeTokensPerSecond)} (${formatMs(t.decodeMs)})`]);
    rows.push([
      "last prompt",
      `${formatInt(t.promptTokens)} tokens, ${formatInt(t.reusedTokens)} reused, ${formatInt(t.promptTokens - t.reusedTokens)} evaluated at ${formatRate(t.promptTokensPerSecond)}`,
    ]);
  }
  return rows;
}

function StatsView({ snapshot }: { snapshot: ChatSnapshot }) {
  const rows = statsRows(snapshot);
  const w = Math.max(...rows.map(([k]) => k.length));
  return (
    <Box flexDirection="column" marginBottom={1}>
      {rows.map(([k, v]) => (
        <Text key={k}>
          <Text color="cyan">{k.padEnd(w)}</Text>
          {"  "}
          {v}
        </Text>
      ))}
    </Box>
  );
}
