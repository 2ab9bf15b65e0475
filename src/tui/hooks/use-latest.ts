import { useRef } from "react";

/** A ref that always holds the latest value: key handlers read it so that keys arriving before a re-render see fresh state. */
export function useLatest<T>(value: T): { readonly current: T } {
  const ref = useRef(value);
  ref.current = value;
  return ref;
}
