import { useCallback, useEffect, useMemo, useRef, useState } from "react";

export interface ExitGuard {
  /** "press Ctrl-C again to exit" is showing. */
  armed: boolean;
  /** A Ctrl-C at the idle prompt: true when it is the second one in time (exit now), else arms the guard. */
  press(): boolean;
  disarm(): void;
}

/** Exiting takes two Ctrl-C presses within `windowMs`, so one stray press never loses a conversation. */
export function useExitGuard(windowMs = 3000): ExitGuard {
  const [armed, setArmed] = useState(false);
  const armedRef = useRef(false);
  const timer = useRef<NodeJS.Timeout | null>(null);
  const disarm = useCallback(() => {
    if (timer.current) clearTimeout(timer.current);
    timer.current = null;
    if (armedRef.current) {
      armedRef.current = false;
      setArmed(false);
    }
  }, []);
  const press = useCallback(() => {
    if (armedRef.current) {
      disarm();
      return true;
    }
    armedRef.current = true;
    setArmed(true);
    timer.current = setTimeout(disarm, windowMs);
    return false;
  }, [disarm, windowMs]);
  useEffect(
    () => () => {
      if (timer.current) clearTimeout(timer.current);
    },
    [],
  );
  return useMemo(() => ({ armed, press, disarm }), [armed, press, disarm]);
}
