// A closed stdout (`kvzap … | head`) ends the program quietly, as `cat` does: no EPIPE trace, no error exit.
import { spawn } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { models, repoRoot } from "../helpers/cli.js";

/** Runs the CLI with a stdout whose reader closes after the first bytes (or before any, when `after` is 0). */
function runIntoClosedPipe(args: string[], after: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; got: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repoRoot, "bin", "kvzap.js"), ...args], {
      env: { ...process.env, KVZAP_MODEL: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    let got = 0;
    child.stderr.on("data", (d) => (stderr += d));
    if (after === 0) child.stdout.destroy();
    else
      child.stdout.on("data", (d: Buffer) => {
        got += d.length;
        if (got >= after) child.stdout.destroy();
      });
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr, got });
    });
  });
}

describe("a closed stdout", () => {
  const cases: [string, string[], number][] = [
    ["run", ["run", models.stories, "--prompt", "Once upon a time", "-n", "400", "--temp", "0"], 10],
    ["chat --prompt", ["chat", "--model", models.stories, "--prompt", "Once upon a time", "--max-tokens", "400"], 10],
    ["profile show", ["profile", "show", path.join(repoRoot, "profiles", "stories260K-linear")], 0],
  ];
  for (const [what, args, after] of cases) {
    it(`${what}: ends quietly with exit 0, no EPIPE trace`, async () => {
      const r = await runIntoClosedPipe(args, after);
      expect(r.signal).toBeNull();
      expect(r.stderr).not.toMatch(/EPIPE|Unhandled 'error' event|\n\s+at /);
      expect(r.code).toBe(0);
    });
  }
});
