import { Box, Text } from "ink";
import { stopNote, type ChatTurn } from "../../commands/chat.js";
import { formatInt, formatRate } from "../format.js";

export function QuestionLine({ question }: { question: string }) {
  return (
    <Box>
      <Text color="cyan" bold>
        {"› "}
      </Text>
      <Text bold>{question}</Text>
    </Box>
  );
}

/** "42 tokens · 310 tok/s · prompt 5,230 tokens (5,219 reused)". */
export function turnFooter(turn: ChatTurn): string {
  const s = turn.stats;
  const parts = [`${formatInt(s.generatedTokens)} ${s.generatedTokens === 1 ? "token" : "tokens"}`, formatRate(s.decodeTokensPerSecond)];
  parts.push(`prompt ${formatInt(s.promptTokens)} tokens${s.reusedTokens > 0 ? ` (${formatInt(s.reusedTokens)} reused)` : ""}`);
  return parts.join(" · ");
}

/** A finished question and answer, as the transcript keeps it. */
export function TurnView({ turn }: { turn: ChatTurn }) {
  const note = stopNote(turn.stopReason);
  const answer = turn.answer.trim();
  return (
    <Box flexDirection="column" marginBottom={1}>
      <QuestionLine question={turn.question} />
      {turn.droppedTurns > 0 ? (
        <Text color="yellow">
          (the {turn.droppedTurns === 1 ? "oldest turn no longer fits" : `${turn.droppedTurns} oldest turns no longer fit`} the context: left out)
        </Text>
      ) : null}
      <Box paddingLeft={2}>
        <Text dimColor={answer === ""}>{answer === "" ? "(no answer)" : answer}</Text>
      </Box>
      <Box paddingLeft={2}>
        {/* One Text, so that a narrow terminal wraps the line as a line, not as two columns. */}
        <Text>
          <Text dimColor>{turnFooter(turn)}</Text>
          {note ? <Text color={turn.stopReason === "abort" ? "yellow" : "magenta"}> · {note}</Text> : null}
        </Text>
      </Box>
    </Box>
  );
}
