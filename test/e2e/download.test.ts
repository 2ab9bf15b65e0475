// Downloads as a person meets them, through the built CLI against the local hub stand-in on 127.0.0.1: a second
// process waits for the first instead of failing, and Ctrl-C says that a rerun resumes.
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHfServer, type HfServer } from "../helpers/hf-server.js";
import { models, repoRoot } from "../helpers/cli.js";

let server: HfServer;
let cacheDir: string;
const configDir = mkdtempSync(path.join(os.tmpdir(), "kvzap-download-config-"));

beforeAll(async () => {
  server = await startHfServer({ files: { "/m/stories260K.gguf": models.stories } });
  cacheDir = mkdtempSync(path.join(os.tmpdir(), "kvzap-download-cache-"));
});
afterAll(async () => {
  await server.close();
  rmSync(cacheDir, { recursive: true, force: true });
  rmSync(configDir, { recursive: true, force: true });
});

function start(args: string[]) {
  const child = spawn(process.execPath, [path.join(repoRoot, "bin", "kvzap.js"), ...args], {
    env: { ...process.env, KVZAP_CONFIG_DIR: configDir, KVZAP_MODEL: "", KVZAP_CACHE_DIR: cacheDir },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = { stdout: "", stderr: "" };
  child.stdout.on("data", (d) => (out.stdout += d));
  child.stderr.on("data", (d) => (out.stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const done = new Promise<{ code: number | null }>((resolve) =>
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code });
    }),
  );
  return { child, out, done };
}

async function until(test: () => boolean): Promise<void> {
  while (!test()) await new Promise((r) => setTimeout(r, 10));
}

describe("downloads through the CLI", () => {
  it("a second process waits for the first; Ctrl-C on the first says a rerun resumes, and the second resumes it", async () => {
    const url = `${server.origin}/m/stories260K.gguf`;
    const args = ["run", url, "--prompt", "Once upon a time", "--max-tokens", "4", "--temp", "0"];
    server.stallAfter(300_000);
    const first = start(args);
    const partial = () => readdirSync(path.join(cacheDir, "models")).find((f) => f.endsWith(".partial"));
    await until(() => {
      try {
        const p = partial();
        return p !== undefined && statSync(path.join(cacheDir, "models", p)).size > 0;
      } catch {
        return false;
      }
    });
    const second = start(args);
    await until(() => /waiting for another kvzap/.test(second.out.stderr));
    expect(second.out.stderr).toMatch(new RegExp(`waiting for another kvzap \\(pid ${first.child.pid}.*\\) that is downloading ${url}`));

    first.child.kill("SIGINT");
    const a = await first.done;
    expect(a.code).toBe(130);
    expect(first.out.stderr).toMatch(
      /download of .* stopped after [\d.]+ KiB of [\d.]+ MiB; what was received is kept: run the same command again to resume it/,
    );
    expect(first.out.stderr).not.toMatch(/\n\s+at /);

    const b = await second.done;
    expect(b.code).toBe(0);
    expect(second.out.stdout.length).toBeGreaterThan(0);
    // The second process resumed from the bytes the first had received.
    expect(server.requests.some((r) => r.method === "GET" && r.range !== undefined && r.status === 206)).toBe(true);
  });
});
