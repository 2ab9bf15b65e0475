import { useCallback, useMemo, useRef, useState } from "react";
import type { Key } from "ink";
import { EMPTY_LINE, editLine, lineOf, type EditResult, type LineState } from "../line-editor.js";

export interface LineEditor {
  line: LineState;
  /** The text right now, even before the next render. */
  value(): string;
  /** Applies a keypress; the result says whether it was an edit, a submit or not an editing key. */
  handle(input: string, key: Partial<Key>): EditResult;
  set(value: string): void;
  clear(): void;
}

/** The input line's text and cursor. Reads from a ref so several keys in one tick (a fast typist, tmux) all apply. */
export function useLineEditor(): LineEditor {
  const [line, setLine] = useState<LineState>(EMPTY_LINE);
  const current = useRef<LineState>(EMPTY_LINE);
  const update = useCallback((next: LineState) => {
    current.current = next;
    setLine(next);
  }, []);
  const handle = useCallback(
    (input: string, key: Partial<Key>) => {
      const r = editLine(current.current, input, key);
      if (r.kind === "edit") update(r.state);
      if (r.kind === "submit") update(EMPTY_LINE);
      return r;
    },
    [update],
  );
  const set = useCallback((value: string) => update(lineOf(value)), [update]);
  const clear = useCallback(() => update(EMPTY_LINE), [update]);
  const value = useCallback(() => current.current.value, []);
  return useMemo(() => ({ line, value, handle, set, clear }), [line, value, handle, set, clear]);
}
