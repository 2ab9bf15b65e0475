// A reader that went away (`kvzap run … | head`) ends the program quietly, as `cat` does: nothing more can reach it,
// and an "Unhandled 'error' event" trace would only land on the terminal. Output is dropped from then on, the work in
// progress is stopped through `stdoutClosed` (exiting at once instead would wait for a generation in the native code
// to finish anyway), and the command exits 0. Any other stdout failure is reported.

const closed = new AbortController();

/** Aborted once stdout's reader went away: commands that stream output stop their work on it. */
export const stdoutClosed: AbortSignal = closed.signal;

export function guardStdout(): void {
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "EPIPE" && e.code !== "ERR_STREAM_DESTROYED") {
      process.stderr.write(`kvzap: cannot write the output: ${e.message}\n`);
      process.exit(1);
    }
    if (closed.signal.aborted) return;
    process.stdout.write = (() => true) as typeof process.stdout.write;
    closed.abort();
  });
}
