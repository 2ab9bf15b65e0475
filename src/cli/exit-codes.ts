// The one map from what went wrong to the exit code the README documents.
import { errorKind } from "../base/errors.js";
import { SIGNAL_EXIT_CODE } from "../base/signals.js";

export const EXIT = {
  ok: 0,
  /** Bad input or a failed operation (a corrupt file, a profile for another model, a failed summary). */
  failure: 1,
  /** A mistake in the command line: a flag, a missing argument, no model configured. */
  usage: 2,
  interrupted: SIGNAL_EXIT_CODE.SIGINT,
  terminated: SIGNAL_EXIT_CODE.SIGTERM,
} as const;

/** The exit code for a thrown value: usage 2, interrupted 130, everything else 1. */
export function exitCodeOf(e: unknown): number {
  const kind = errorKind(e);
  return kind === "usage" ? EXIT.usage : kind === "interrupted" ? EXIT.interrupted : EXIT.failure;
}
