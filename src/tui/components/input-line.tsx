import { Box, Text } from "ink";
import type { LineState } from "../line-editor.js";

export interface InputLineProps {
  line: LineState;
  placeholder: string;
  /** Greyed out (an answer is being written); typing ahead still works. */
  waiting?: boolean;
}

/** The prompt: "› " and the text with a block cursor; a grey placeholder when empty. */
export function InputLine({ line, placeholder, waiting }: InputLineProps) {
  const { value, cursor } = line;
  const cp = value.codePointAt(cursor);
  const at = value.slice(cursor, cursor + (cp === undefined ? 0 : cp > 0xffff ? 2 : 1));
  const before = value.slice(0, cursor);
  const after = value.slice(cursor + at.length);
  return (
    <Box>
      <Text color={waiting ? "gray" : "green"} bold>
        {"› "}
      </Text>
      {value === "" ? (
        <Text>
          <Text inverse> </Text>
          <Text dimColor>{placeholder}</Text>
        </Text>
      ) : (
        <Text dimColor={waiting}>
          {before}
          <Text inverse>{at === "" || at === "\n" ? " " : at}</Text>
          {at === "\n" ? "\n" : ""}
          {after}
        </Text>
      )}
    </Box>
  );
}
