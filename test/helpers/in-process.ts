// Running a CLI command's main() inside the test process: its output captured, its errors mapped to exit codes
// the way src/cli/main.ts maps them.
import { afterEach, beforeEach, vi } from "vitest";
import { errorKind } from "../../src/base/errors.js";
import { exitCodeOf } from "../../src/cli/exit-codes.js";
import { SETTINGS, SETTING_KEYS } from "../../src/settings/schema.js";

/** Settings as on a fresh machine: the config file in `configDir`, no KVZAP_* variable set (until vi.unstubAllEnvs). */
export function isolateSettings(configDir: string): void {
  vi.stubEnv("KVZAP_CONFIG_DIR", configDir);
  for (const k of SETTING_KEYS) vi.stubEnv(SETTINGS[k].env, undefined);
}

/** Sends what the process writes to stdout and stderr to `sink` instead of the terminal (until vi.restoreAllMocks). */
export function captureOutput(sink: (stream: "stdout" | "stderr", text: string) => void): void {
  for (const stream of ["stdout", "stderr"] as const) {
    vi.spyOn(process[stream], "write").mockImplementation((chunk: string | Uint8Array) => {
      sink(stream, String(chunk));
      return true;
    });
  }
}

/** What the commands a test runs in-process wrote, emptied before each test. */
export interface CapturedOutput {
  stdout: string;
  stderr: string;
}

/**
 * For every test of the calling file: settings as on a fresh machine with the config file in `configDir()`, and the
 * process's output captured in the returned object; afterwards the mocks and stubbed variables are restored. Hooks the
 * file registers after this call run after it (stubs of its own on top of the isolation).
 */
export function captureCommands(configDir: () => string): CapturedOutput {
  const out: CapturedOutput = { stdout: "", stderr: "" };
  beforeEach(() => {
    isolateSettings(configDir());
    out.stdout = "";
    out.stderr = "";
    captureOutput((stream, text) => (out[stream] += text));
  });
  afterEach(() => {
    vi.restoreAllMocks();
    vi.unstubAllEnvs();
  });
  return out;
}

/** The exit code main() returns, or the one of the error it throws (UsageError 2, UserError 1) with its message. */
export async function runMain(main: (argv: string[]) => Promise<number>, argv: string[]): Promise<{ code: number; message?: string }> {
  try {
    return { code: await main(argv) };
  } catch (e) {
    if (errorKind(e) !== null) return { code: exitCodeOf(e), message: (e as Error).message };
    throw e;
  }
}
