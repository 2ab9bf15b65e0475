import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const sharedDir = path.resolve(repoRoot, "..", "shared");
export const models = {
  stories: path.join(sharedDir, "models", "stories260K.gguf"),
  testbed: path.join(sharedDir, "models", "testbed-28M-v0-q8_0.gguf"),
};
export const corpora = path.join(sharedDir, "corpora");

/** A config folder of this test process's own, so that a developer's real settings never leak into a test. */
const isolatedConfigDir = mkdtempSync(path.join(os.tmpdir(), "kvzap-test-config-"));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the built CLI (bin/kvzap.js → dist/) as a user would, with a hard timeout. */
export function kvzap(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repoRoot, "bin", "kvzap.js"), ...args], {
      cwd: options.cwd ?? repoRoot,
      env: { ...process.env, KVZAP_CONFIG_DIR: isolatedConfigDir, KVZAP_MODEL: "", ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(options.input ?? "");
  });
}

/** A failed run that ended by itself with a message, not a crash: non-zero exit, no signal, no stack trace. */
export function expectCleanFailure(r: CliResult): void {
  if (r.signal !== null) throw new Error(`killed by ${r.signal}: ${r.stderr}`);
  if (r.code === 0) throw new Error(`expected a failure, got exit 0: ${r.stdout}`);
  if (r.code !== null && r.code > 2 && r.code !== 130) throw new Error(`exit code ${r.code} looks like a crash: ${r.stderr}`);
  if (/\n\s+at .+:\d+:\d+\)?/.test(r.stderr)) throw new Error(`stack trace on stderr: ${r.stderr}`);
}
