import { Box, Text } from "ink";
import { formatInt, formatMs, tailRows } from "../format.js";
import { Bar } from "./bar.js";
import { Spinner } from "./spinner.js";
import { QuestionLine } from "./turn-view.js";

export interface LiveAnswer {
  question: string;
  text: string;
  /** Streamed pieces so far (about one per token). */
  pieces: number;
  promptDone: number;
  promptTotal: number;
  startedAt: number;
  stopping: boolean;
}

/** The answer being written. Only its last `maxRows` rows are shown, so the screen never scrolls while it streams. */
export function LiveTurn({ live, columns, maxRows, now }: { live: LiveAnswer; columns: number; maxRows: number; now: number }) {
  // Ink wraps at word boundaries, which takes more rows than a character count says: estimate narrow.
  const { text, cut } = tailRows(live.text.replace(/^\s+/, ""), Math.max(1, columns - 6), Math.max(1, maxRows));
  const reading = live.pieces === 0 && live.promptTotal > 0 && live.promptDone < live.promptTotal;
  return (
    <Box flexDirection="column">
      <QuestionLine question={live.question} />
      {cut ? <Text dimColor> …</Text> : null}
      {text ? (
        <Box paddingLeft={2}>
          <Text>{text}</Text>
        </Box>
      ) : null}
      <Box paddingLeft={2}>
        <Spinner color={live.stopping ? "yellow" : "cyan"} />
        {live.stopping ? (
          <Text color="yellow"> stopping…</Text>
        ) : reading ? (
          <Text dimColor>
            {" reading the prompt "}
            <Bar fraction={live.promptDone / live.promptTotal} width={20} />
            {` ${formatInt(live.promptDone)}/${formatInt(live.promptTotal)} tokens`}
          </Text>
        ) : (
          <Text dimColor>
            {" "}
            {live.pieces > 0 ? `writing · ${formatInt(live.pieces)} tokens` : "thinking"} · {formatMs(now - live.startedAt)}
          </Text>
        )}
      </Box>
    </Box>
  );
}
