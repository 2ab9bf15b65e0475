import { spawn } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { repoRoot } from "../../test/helpers/cli.js";

// A child process that holds StopSignals (from dist/, as the CLI runs it) and reports what it sees.
const CHILD = `
const { StopSignals } = await import(${JSON.stringify(path.join(repoRoot, "dist", "base", "signals.js"))});
const stop = new StopSignals({ onStop: (s) => process.stdout.write("stopping on " + s + "\\n") });
stop.signal.addEventListener("abort", () => process.stdout.write("aborted\\n"));
process.stdout.write("ready\\n");
const hold = setInterval(() => {
  if (process.argv.includes("finish") && stop.exitCode !== null) { clearInterval(hold); stop.dispose(); process.stdout.write("exit " + stop.exitCode + "\\n"); }
}, 20);
`;

function runChild(mode: "finish" | "hold", signals: { signal: NodeJS.Signals; afterMs: number }[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", CHILD, "--", mode], { stdio: ["ignore", "pipe", "inherit"] });
    let stdout = "";
    child.stdout.on("data", (d) => {
      const first = stdout === "";
      stdout += d;
      if (first && stdout.startsWith("ready")) for (const s of signals) setTimeout(() => child.kill(s.signal), s.afterMs);
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout });
    });
  });
}

describe("StopSignals", () => {
  it("turns the first SIGTERM into an abort and the shell's exit code, and lets the work finish", async () => {
    const r = await runChild("finish", [{ signal: "SIGTERM", afterMs: 50 }]);
    expect(r.stdout).toBe("ready\nstopping on SIGTERM\naborted\nexit 143\n");
    expect(r.code).toBe(0);
  });

  it("quits at once with 130 on a second Ctrl-C", async () => {
    const r = await runChild("hold", [
      { signal: "SIGINT", afterMs: 50 },
      { signal: "SIGINT", afterMs: 800 },
    ]);
    expect(r.stdout).toBe("ready\nstopping on SIGINT\naborted\n");
    expect(r.code).toBe(130);
  });
});
