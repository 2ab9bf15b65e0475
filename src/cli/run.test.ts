// `kvzap run` in-process: what Ctrl-C does while the model loads.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect, it } from "vitest";
import { models } from "../../test/helpers/cli.js";
import { captureCommands, runMain } from "../../test/helpers/in-process.js";
import { main } from "./run.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kvzap-run-cli-"));
const io = captureCommands(() => path.join(tmp, "config"));

it("Ctrl-C while the model loads stops the load: exit code 130, one message, nothing generated", async () => {
  // the SIGINT handler run installs, called as soon as it exists (not process.emit: the test runner listens too)
  const before = new Set(process.listeners("SIGINT"));
  let interrupted = false;
  const poll = setInterval(() => {
    const added = process.listeners("SIGINT").find((l) => !before.has(l));
    if (!added || interrupted) return;
    interrupted = true;
    (added as () => void)();
  }, 0);
  try {
    const r = await runMain(main, [models.testbed, "--prompt", "Once upon a time", "--max-tokens", "8", "--kv", "full", "--temp", "0"]);
    expect(interrupted).toBe(true);
    expect(r.code).toBe(130);
    expect(r.message).toMatch(/^the model load was aborted: /);
    expect(io.stdout).toBe("");
  } finally {
    clearInterval(poll);
  }
});
