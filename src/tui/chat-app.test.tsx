// The chat screen on the real engine (stories260K): typing, streaming, slash commands, Ctrl-C.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { render } from "ink-testing-library";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { models } from "../../test/helpers/cli.js";
import { openConversation, type Conversation } from "../commands/chat.js";
import { Model } from "../engine/model.js";
import { ChatApp } from "./chat-app.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "kvzap-tui-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let open: Conversation[] = [];
let screens: { unmount(): void }[] = [];
afterEach(async () => {
  for (const s of screens) s.unmount();
  for (const c of open) await c.close();
  open = [];
  screens = [];
});

function chatScreen(o: { files?: string[]; contextSize: number; maxTokens: number }) {
  const screen = render(
    <ChatApp
      modelName="stories260K"
      open={async (onProgress, signal) => {
        const c = await openConversation({
          files: o.files ?? [],
          loadModel: (onFraction) => Model.load(models.stories, { onProgress: onFraction }),
          session: { contextSize: o.contextSize, threads: 1 },
          config: { maxTokens: o.maxTokens, sampling: { temperature: 0 } },
          prefill: true,
          onProgress,
          signal,
        });
        open.push(c);
        return c;
      }}
    />,
  );
  screens.push(screen);
  return screen;
}

/** Waits until the screen shows what `test` wants; fails with the last frame if it never does. */
async function until(screen: { lastFrame(): string | undefined }, test: (frame: string) => boolean, timeoutMs = 20_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const frame = screen.lastFrame() ?? "";
    if (test(frame)) return frame;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`the screen never got there; it shows:\n${screen.lastFrame()}`);
}

const ready = (f: string) => /› \s*Ask (anything|about)/.test(f);
/** Only what is below the transcript: the live area, the input line and the status bar. */
const liveArea = (f: string) => f.slice(f.lastIndexOf("kvzap chat"));

async function type(screen: { stdin: { write(s: string): void } }, text: string): Promise<void> {
  for (const ch of text) {
    screen.stdin.write(ch);
    await new Promise((r) => setImmediate(r));
  }
}

describe("chat screen", () => {
  it("a slash command typed during loading keeps its Enter: it runs once loading has finished, and the loading hints go", async () => {
    const doc = path.join(dir, "typed-ahead.txt");
    writeFileSync(doc, "Tom had a red ball. He played with it in the park every day.\n".repeat(20));
    const screen = chatScreen({ files: [doc], contextSize: 4096, maxTokens: 16 });
    expect(ready(screen.lastFrame() ?? "")).toBe(false);
    await type(screen, "/stats");
    screen.stdin.write("\r");
    await until(screen, (f) => f.includes("(runs when loading has finished)"));
    const frame = await until(screen, (f) => ready(f) && /\/stats/.test(f) && /context/.test(f.slice(f.indexOf("/stats"))));
    expect(frame).not.toMatch(/commands work once loading|runs when loading has finished|type ahead|Ctrl-C cancels/);
    expect(liveArea(frame)).toMatch(/› \s*Ask about typed-ahead\.txt/); // the line is empty again
  });

  it("warns on screen at load time when the documents leave too little room to answer", async () => {
    const big = path.join(dir, "full.txt");
    writeFileSync(big, "Tom had a red ball. He played with it in the park every day. One day the ball rolled into the pond.\n".repeat(9));
    const screen = chatScreen({ files: [big], contextSize: 512, maxTokens: 200 });
    const frame = await until(screen, ready);
    expect(frame.replace(/\s+/g, " ")).toMatch(
      /the documents fill \d+ of the 512 tokens of the context: \d+ are left for a question and its answer, so answers will stop early; run with --ctx 1024/,
    );
  });

  it("streams an answer into the live area, then keeps the finished turn", async () => {
    // A long context makes every decoding step slower, so the answer takes long enough to watch it stream.
    const screen = chatScreen({ contextSize: 8192, maxTokens: 800 });
    await until(screen, ready);
    expect(screen.lastFrame()).toMatch(/stories260K · ctx 0\/8,192 · KV 5\.00 MiB/);
    await type(screen, "Once upon a time");
    expect(screen.lastFrame()).toContain("› Once upon a time");
    screen.stdin.write("\r");
    const streaming = await until(screen, (f) => /writing · \d+ tokens/.test(f));
    const final = await until(screen, (f) => /800 tokens · [\d.]+ tok\/s/.test(f));
    const answer = open[0].turns[0].answer.trim();
    expect(answer.length).toBeGreaterThan(100);
    // While writing, the live area showed a part of the answer; afterwards the whole answer is in the transcript.
    const partial = /› Once upon a time\n {2}([^\n]+)/.exec(streaming)?.[1] ?? "";
    expect(partial.trim().length).toBeGreaterThan(0);
    expect(answer.replace(/\s+/g, " ")).toContain(partial.trim().slice(0, 20));
    expect(final).not.toMatch(/writing ·/);
    expect(final.replace(/\s+/g, " ")).toContain(answer.replace(/\s+/g, " ").slice(0, 60));
    expect(final).toMatch(/stopped at --max-tokens/);
    expect(final).toMatch(/stories260K · [\d.]+ tok\/s · ctx 8\d\d\/8,192/);
    // ↑ brings the question back.
    screen.stdin.write("\u001B[A");
    await until(screen, (f) => /› Once upon a time\s*\n─/.test(liveArea(f)));
  });

  it("runs slash commands: /help, /stats, /kv, /save, /clear, unknown", async () => {
    const screen = chatScreen({ contextSize: 512, maxTokens: 24 });
    await until(screen, ready);
    await type(screen, "The cat\r");
    await until(screen, (f) => /24 tokens ·/.test(f));

    await type(screen, "/help\r");
    const help = await until(screen, (f) => f.includes("Commands"));
    for (const name of ["/help", "/clear", "/stats", "/save FILE", "/kv", "/exit"]) expect(help).toContain(name);

    await type(screen, "/stats\r");
    const stats = await until(screen, (f) => /last answer\s+24 tokens/.test(f));
    expect(stats).toMatch(/context\s+\d+ of 512 tokens/);
    expect(stats).toMatch(/KV memory\s+320 KiB in use/);
    expect(stats).toMatch(/turns\s+1/);

    await type(screen, "/kv\r");
    await until(screen, (f) => /KV memory · policy full/.test(f) && /KV\s+█+\s+320 KiB \/ 320 KiB \(100%\)/.test(f));
    await type(screen, "/kv\r");
    await until(screen, (f) => !f.includes("KV memory · policy"));

    const file = path.join(dir, "chat.md");
    await type(screen, `/save ${file}\r`);
    await until(screen, (f) => f.includes(`saved 1 turn to ${file}`));
    const md = readFileSync(file, "utf8");
    expect(md).toContain("## You\n\nThe cat\n");
    expect(md).toContain(open[0].turns[0].answer.trim());

    await type(screen, "/frobnicate\r");
    await until(screen, (f) => f.includes("unknown command /frobnicate"));

    await type(screen, "/clear\r");
    await until(screen, (f) => f.includes("conversation cleared"));
    expect(open[0].turns).toHaveLength(0);
    await until(screen, (f) => /ctx 0\/512/.test(liveArea(f)));
  });

  it("Ctrl-C stops an answer and keeps it, marked interrupted; twice at the prompt exits", async () => {
    const screen = chatScreen({ contextSize: 8192, maxTokens: 8000 });
    await until(screen, ready);
    await type(screen, "Once upon a time\r");
    await until(screen, (f) => /writing · \d+ tokens/.test(f));
    screen.stdin.write("\x03");
    const stopped = await until(screen, (f) => f.includes("interrupted"));
    const turn = open[0].turns[0];
    expect(turn.stopReason).toBe("abort");
    expect(turn.stats.generatedTokens).toBeGreaterThan(0);
    expect(turn.stats.generatedTokens).toBeLessThan(8000);
    expect(stopped).toMatch(/\d+ tokens · [\d.]+ tok\/s · prompt \d+ tokens · interrupted/);

    // A line being typed: Ctrl-C clears it rather than arming the exit.
    await type(screen, "half a question");
    screen.stdin.write("\x03");
    await until(screen, (f) => ready(liveArea(f)) && !f.includes("press Ctrl-C again"));

    screen.stdin.write("\x03");
    await until(screen, (f) => f.includes("press Ctrl-C again to exit"));
    screen.stdin.write("\x03");
    const last = await until(screen, (f) => f.includes("bye · 1 answer this session"));
    expect(liveArea(last)).not.toMatch(/› \s*Ask/);
  });

  it("shows documents loading, then the tokens they take; a question typed meanwhile is asked when ready", async () => {
    const notes = path.join(dir, "notes.md");
    writeFileSync(notes, "# Notes\n\nThe little dog liked to play in the park with a red ball.\n".repeat(40));
    const screen = chatScreen({ files: [notes], contextSize: 2048, maxTokens: 16 });
    await until(screen, (f) => /evaluating the documents .* [\d,]+ \/ 1,\d{3} tokens/.test(f));
    await type(screen, "What does the dog like?\r");
    await until(screen, (f) => f.includes("› What does the dog like?  (asked when loading has finished)"));
    const answered = await until(screen, (f) => /16 tokens ·/.test(f));
    expect(answered).toMatch(/✔ notes\.md · [\d,]+ tokens/);
    expect(answered).toMatch(/1,\d{3} of 2,048 context tokens in use/);
    expect(answered).toContain("Ask about notes.md");
    const used = open[0].snapshot().documentTokens;
    expect(used).toBeGreaterThan(1000);
    // The question reused the evaluated documents.
    expect(answered).toMatch(new RegExp(`› What does the dog like\\?\\n[\\s\\S]*prompt [\\d,]+ tokens \\(${used.toLocaleString("en-US")} reused\\)`));
  });

  it("a document that does not fit: says how many tokens it needs and which --ctx fits, then exits", async () => {
    const long = path.join(dir, "long.txt");
    writeFileSync(long, "Once upon a time there was a little dog. ".repeat(60));
    const screen = chatScreen({ files: [long], contextSize: 256, maxTokens: 16 });
    const frame = await until(screen, (f) => f.includes("✗"));
    expect(frame).toMatch(/✗ long\.txt needs [\d,]+ tokens but the context holds 256; run with --ctx (1024|2048) or more/);
    expect(existsSync(long)).toBe(true);
  });
});
