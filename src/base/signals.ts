// The one way a long command reacts to Ctrl-C, `kill` and a closed terminal: the first signal asks the work to stop
// (through an AbortSignal, so finished work is kept), a second one from a person quits at once.

export type StopSignal = "SIGINT" | "SIGTERM" | "SIGHUP";

/** The shell's convention: 128 + the signal's number. */
export const SIGNAL_EXIT_CODE: Record<StopSignal, number> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };

export interface StopSignalOptions {
  /** Which signals stop the work (default SIGINT and SIGTERM). */
  signals?: readonly StopSignal[];
  /** Called once, on the first signal: say what happens now (stderr). */
  onStop?: (signal: StopSignal) => void;
  /** On a second signal: leave at once (default), or call this instead. */
  onSecond?: (signal: StopSignal) => void;
}

/**
 * Listens for stop signals until dispose(). `signal` aborts on the first one; `exitCode` is then the shell's code for
 * it (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).
 */
export class StopSignals {
  private readonly controller = new AbortController();
  private readonly handlers: [StopSignal, () => void][];
  private stoppedAt = 0;
  stoppedBy: StopSignal | null = null;

  constructor(private readonly options: StopSignalOptions = {}) {
    this.handlers = (options.signals ?? ["SIGINT", "SIGTERM"]).map((s) => [s, () => this.handle(s)]);
    for (const [s, h] of this.handlers) process.on(s, h);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get exitCode(): number | null {
    return this.stoppedBy === null ? null : SIGNAL_EXIT_CODE[this.stoppedBy];
  }

  dispose(): void {
    for (const [s, h] of this.handlers) process.off(s, h);
  }

  private handle(signal: StopSignal): void {
    if (this.stoppedBy === null) {
      this.stoppedBy = signal;
      this.stoppedAt = performance.now();
      this.options.onStop?.(signal);
      this.controller.abort();
      return;
    }
    // signal-exit 3 (loaded through node-llama-cpp → proper-lockfile) can miscount the listeners and raise the same
    // signal again at once; a person's second Ctrl-C comes later than that.
    if (performance.now() - this.stoppedAt < 500) return;
    if (this.options.onSecond) this.options.onSecond(signal);
    else process.exit(SIGNAL_EXIT_CODE[signal]);
  }
}
