import { useRef } from "react";
import { InputHistory } from "../input-history.js";

/** One InputHistory for the lifetime of the component (browsing does not need re-renders: the line editor shows it). */
export function useInputHistory(initial: readonly string[] = []): InputHistory {
  const ref = useRef<InputHistory | null>(null);
  if (ref.current === null) ref.current = new InputHistory(initial);
  return ref.current;
}
