/** A mistake in how the command was called: exit code 2, message plus a pointer to --help. */
export class UsageError extends Error {
  readonly exitCode = 2;
}

/** Bad input or a failed operation the user can act on: exit code 1, one clear message, no stack trace. */
export class UserError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
  }
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
