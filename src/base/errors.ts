// Error kinds every layer may throw. They carry no exit code: src/cli/exit-codes.ts maps each kind to one.

/** What went wrong, as far as the caller of the program is concerned. */
export type ErrorKind = "usage" | "input" | "interrupted";

/** A mistake in how the command was called (a flag, a missing argument or model): the CLI points to --help. */
export class UsageError extends Error {
  readonly kind: ErrorKind = "usage";
}

/** Bad input or a failed operation the user can act on: one clear message, no stack trace. */
export class UserError extends Error {
  readonly kind: ErrorKind = "input";
}

/** The work was stopped on request (Ctrl-C, a signal); what was finished is kept. */
export class InterruptedError extends Error {
  readonly kind: ErrorKind = "interrupted";
}

/** The kind of a thrown value, or null for an unexpected error (a bug, a native failure). */
export function errorKind(e: unknown): ErrorKind | null {
  return e instanceof UsageError || e instanceof UserError || e instanceof InterruptedError ? e.kind : null;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
