// The chat screen as a person sees it: the built `kvzap chat` in a real terminal (tmux), keys sent, screen read back.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { models, repoRoot } from "../helpers/cli.js";

const hasTmux = spawnSync("tmux", ["-V"]).status === 0;
// Developers without tmux skip this file; CI must have it (.ci/run installs it; vitest.config.ts sets KVZAP_CI).
const skip = !hasTmux && process.env.KVZAP_CI !== "1";

const socket = `kvzap-test-${process.pid}`;
const configDir = mkdtempSync(path.join(os.tmpdir(), "kvzap-tmux-config-"));
const pdf = path.join(repoRoot, "test/fixtures/documents/report.pdf");

function tmux(...args: string[]): string {
  return execFileSync("tmux", ["-L", socket, ...args], { encoding: "utf8" });
}

/** The pane's text, with its scrollback. */
function screen(): string {
  return tmux("capture-pane", "-p", "-J", "-S", "-500", "-t", "chat");
}

async function waitFor(what: string, test: (text: string) => boolean, timeoutMs = 20_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  let text = "";
  while (Date.now() < end) {
    text = screen();
    if (test(text)) return text;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}; the terminal shows:\n${text}`);
}

function keys(...k: string[]): void {
  tmux("send-keys", "-t", "chat", ...k);
}

/** Typed text goes literally (-l), so that words like "Enter" are not read as key names. */
function typeText(text: string): void {
  tmux("send-keys", "-t", "chat", "-l", text);
}

/** The part of the screen below the transcript: live area, input line, status bar. */
function bottom(text: string, lines = 8): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

describe.skipIf(skip)("kvzap chat in a terminal (tmux)", () => {
  beforeAll(() => {
    const command = [
      // Ink draws only the last frame when it thinks it runs in CI.
      "env CI=0 CONTINUOUS_INTEGRATION=0 KVZAP_MODEL=",
      `KVZAP_CONFIG_DIR=${configDir}`,
      `node bin/kvzap.js chat ${pdf} --model ${models.stories} --ctx 8192 --max-tokens 4000 --temp 0 --threads 1`,
      '; echo "[exit $?]"; sleep 600',
    ].join(" ");
    tmux("new-session", "-d", "-s", "chat", "-x", "120", "-y", "40", "-c", repoRoot, command);
  });

  afterAll(() => {
    spawnSync("tmux", ["-L", socket, "kill-server"]);
    rmSync(configDir, { recursive: true, force: true });
  });

  it("loads the PDF with progress, streams an answer, runs slash commands, and handles Ctrl-C", async () => {
    // Loading: pages, then tokens evaluated of the total.
    await waitFor("document evaluation progress", (t) => /evaluating the documents .* [\d,]+ \/ 5,\d{3} tokens/.test(t) || /✔ report\.pdf/.test(t), 60_000);
    const loaded = await waitFor("the document to be loaded", (t) => /✔ report\.pdf · 3 pages · [\d,]+ tokens/.test(t), 90_000);
    expect(bottom(loaded)).toMatch(/ctx 5,\d{3}\/8,192 · KV [\d.]+ (KiB|MiB) in use \(\d+% of [\d.]+ MiB\) · [\d.]+ (KiB|MiB) held · kvzap τ −[\d.]+/);
    expect(bottom(loaded)).toContain("Ask about report.pdf");

    typeText("Who is Sherlock Holmes?");
    keys("Enter");
    const writing = await waitFor("the answer to stream", (t) => /writing · \d+ tokens/.test(t) && /› Who is Sherlock Holmes\?\n {2}\S/.test(t));
    const partial = /› Who is Sherlock Holmes\?\n {2}(.+)/.exec(writing)![1].trim();
    expect(bottom(writing)).toContain("Ctrl-C stops the answer");

    keys("C-c");
    const stopped = await waitFor("the answer to stop", (t) => /\d+ tokens · [\d.]+ tok\/s · prompt 5,\d{3} tokens \(5,\d{3} reused\) · interrupted/.test(t));
    // The partial answer stays in the transcript.
    expect(stopped).toContain(partial.slice(0, 10));
    expect(bottom(stopped)).toMatch(/ctx 5,\d{3}\/8,192 · KV [\d.]+ (KiB|MiB)/);

    typeText("/stats");
    keys("Enter");
    const stats = await waitFor("/stats", (t) => /last answer\s+\d+ tokens at [\d.]+ tok\/s/.test(t));
    expect(stats).toMatch(/documents\s+5,\d{3} tokens: report\.pdf 5,\d{3}/);
    expect(stats).toMatch(/turns\s+1/);

    typeText("/kv");
    keys("Enter");
    const panel = await waitFor("the KV panel", (t) => /KV memory · policy kvzap/.test(t) && /layer 0/.test(t));
    expect(panel).toMatch(/context\s+█+.* 5,\d{3} \/ 8,192 tokens/);
    if (process.env.KVZAP_CHAT_CAPTURE) writeFileSync(process.env.KVZAP_CHAT_CAPTURE, tmux("capture-pane", "-p", "-t", "chat"));

    // ↑ recalls the last input; Ctrl-C clears the line instead of arming the exit.
    keys("Up");
    await waitFor("history recall", (t) => /› \/kv\s*\n─/.test(bottom(t, 3)));
    keys("C-c");
    await waitFor("the line to clear", (t) => /› \s*Ask about report\.pdf/.test(bottom(t, 3)));

    keys("C-c");
    await waitFor("the exit warning", (t) => bottom(t, 2).includes("press Ctrl-C again to exit"));
    keys("C-c");
    const end = await waitFor("a clean exit", (t) => /\[exit \d+\]/.test(t), 15_000);
    expect(end).toContain("[exit 0]");
    expect(end).toContain("bye · 1 answer this session");
    expect(end).not.toMatch(/Error|at .+:\d+:\d+/);
  });
});

describe.skipIf(skip)("kvzap chat in a terminal that is resized (tmux)", () => {
  const resizeSocket = `kvzap-resize-${process.pid}`;
  const t = (...args: string[]) => execFileSync("tmux", ["-L", resizeSocket, ...args], { encoding: "utf8" });
  /** The visible pane only, or with its scrollback. */
  const pane = (scrollback = false) => t("capture-pane", "-p", ...(scrollback ? ["-S", "-500"] : []), "-t", "resize");
  async function settle(what: string, test: (text: string) => boolean): Promise<string> {
    const end = Date.now() + 20_000;
    let text = "";
    while (Date.now() < end) {
      text = pane();
      if (test(text)) return text;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`timed out waiting for ${what}; the terminal shows:\n${text}`);
  }

  beforeAll(() => {
    const command = [
      "env CI=0 CONTINUOUS_INTEGRATION=0 KVZAP_MODEL=",
      `KVZAP_CONFIG_DIR=${configDir}`,
      `node bin/kvzap.js chat --model ${models.stories} --ctx 2048 --max-tokens 60 --temp 0 --threads 1`,
      "; sleep 600",
    ].join(" ");
    t("new-session", "-d", "-s", "resize", "-x", "120", "-y", "30", "-c", repoRoot, command);
  });
  afterAll(() => {
    spawnSync("tmux", ["-L", resizeSocket, "kill-server"]);
  });

  it("redraws cleanly at 60 and 40 columns: one status bar, one input line, whole fields, the KV figure kept", async () => {
    await settle("the chat to be ready", (s) => s.includes("Ask anything"));
    t("send-keys", "-t", "resize", "-l", "Once upon a time");
    t("send-keys", "-t", "resize", "Enter");
    const wide = await settle("the answer", (s) => /60 tokens · [\d.]+ tok\/s/.test(s));
    expect(wide).toMatch(/ctx \d+\/2,048 · KV [\d.]+ (KiB|MiB)( in use \(\d+% of [\d.]+ (KiB|MiB)\) · [\d.]+ (KiB|MiB) held)? · kvzap τ −[\d.]+/);
    for (const width of [60, 40]) {
      t("resize-window", "-t", "resize", "-x", String(width), "-y", "30");
      await settle(`the redraw at ${width} columns`, (s) => s.split("\n").some((l) => /^─+$/.test(l) && l.length === width));
      await new Promise((r) => setTimeout(r, 500)); // nothing else arrives late
      const context = pane().split("\n");
      expect(context.filter((l) => /ctx \d/.test(l))).toHaveLength(1);
      expect(context.filter((l) => /^─+$/.test(l))).toHaveLength(1);
      expect(context.filter((l) => l.includes("Ask anything"))).toHaveLength(1);
      const bar = context.find((l) => /ctx \d/.test(l))!;
      expect(bar).toMatch(/^ctx \d+\/2,048 · KV [\d.]+ (KiB|MiB)/); // whole fields, the KV figure kept (its short form)
      expect(bar).not.toContain("…");
      // The transcript is written once, at the new width.
      const all = pane(true).split("\n");
      expect(all.filter((l) => l.includes("› Once upon a time"))).toHaveLength(1);
      expect(all.every((l) => l.length <= width)).toBe(true);
    }
  });
});
