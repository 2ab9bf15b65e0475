import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { models } from "../../test/helpers/cli.js";
import { UserError } from "../base/errors.js";
import { Model } from "../engine/model.js";
import { buildMessages, contextThatFits, DocumentsTooLongError, openConversation, type Conversation, type LoadProgress } from "./chat.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "kvzap-chat-"));
const story = path.join(dir, "story.txt");
writeFileSync(story, "Tom had a red ball. He played with it in the park every day. One day the ball rolled into the pond.\n".repeat(8));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let opened: Conversation[] = [];
afterEach(async () => {
  for (const c of opened) await c.close();
  opened = [];
});

async function conversation(
  o: { files?: string[]; contextSize?: number; maxTokens?: number; system?: string; prefill?: boolean; onProgress?: (p: LoadProgress) => void } = {},
) {
  const c = await openConversation({
    files: o.files ?? [story],
    loadModel: (onFraction) => Model.load(models.stories, { onProgress: onFraction }),
    session: { contextSize: o.contextSize ?? 1024, threads: 1 },
    config: { maxTokens: o.maxTokens ?? 16, system: o.system, sampling: { temperature: 0 } },
    prefill: o.prefill ?? true,
    onProgress: o.onProgress,
  });
  opened.push(c);
  return c;
}

describe("buildMessages", () => {
  it("puts each document, headed by its name, and the first question into the first user turn", () => {
    const docs = [
      { name: "a.pdf", text: "[page 1 of 1]\nAlpha." },
      { name: "b.md", text: "# Beta\n" },
    ];
    const m = buildMessages(docs, [{ question: "Q1?", answer: "A1." }], "Q2?", "Be brief.");
    expect(m).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: '<document name="a.pdf">\n[page 1 of 1]\nAlpha.\n</document>\n\n<document name="b.md">\n# Beta\n</document>\n\nQ1?' },
      { role: "assistant", content: "A1." },
      { role: "user", content: "Q2?" },
    ]);
    expect(buildMessages([], [], "Hi?")).toEqual([{ role: "user", content: "Hi?" }]);
  });
});

describe("Conversation on stories260K", () => {
  it("evaluates the documents first, then answers reusing them, streaming the answer", async () => {
    const progress: LoadProgress[] = [];
    const c = await conversation({ onProgress: (p) => progress.push(p) });
    expect(progress.map((p) => p.phase)).toEqual(expect.arrayContaining(["document", "model", "evaluate"]));
    const docTokens = c.documentsPrompt()!;
    expect(c.snapshot()).toMatchObject({ contextUsed: docTokens.length, documentTokens: docTokens.length, turns: 0, contextSize: 1024 });
    expect(c.documents[0]).toMatchObject({ name: "story.txt", kind: "text" });
    expect(c.documents[0].tokens).toBeGreaterThan(100);

    const pieces: string[] = [];
    const t1 = await c.ask("What did Tom have?", { onText: (t) => pieces.push(t) });
    expect(pieces.join("")).toBe(t1.answer);
    expect(t1.answer.length).toBeGreaterThan(0);
    expect(t1.stats.generatedTokens).toBe(16);
    expect(t1.stopReason).toBe("maxTokens");
    // Everything up to the question was in memory already (the boundary token may be tokenized differently).
    expect(t1.stats.reusedTokens).toBeGreaterThanOrEqual(docTokens.length - 2);

    const t2 = await c.ask("And then?");
    // The second turn re-renders the whole conversation; only the new question is evaluated.
    expect(t2.stats.reusedTokens).toBeGreaterThanOrEqual(t1.stats.promptTokens + 10);
    expect(t2.stats.promptTokens - t2.stats.reusedTokens).toBeLessThan(15);
    expect(c.turns.map((t) => t.question)).toEqual(["What did Tom have?", "And then?"]);
    expect(c.snapshot().last).toBe(t2);
  });

  it("keeps an interrupted answer, marked as such", async () => {
    const c = await conversation({ files: [], contextSize: 2048, maxTokens: 2000 });
    const controller = new AbortController();
    let seen = 0;
    const turn = await c.ask("Once upon a time", {
      signal: controller.signal,
      onText: () => {
        if (++seen === 5) controller.abort();
      },
    });
    expect(turn.stopReason).toBe("abort");
    expect(turn.answer.length).toBeGreaterThan(0);
    expect(turn.stats.generatedTokens).toBeLessThan(2000);
    expect(c.turns).toEqual([turn]);
    expect(c.transcript()).toContain("interrupted");
    expect(c.busy).toBe(false);
  });

  it("/clear goes back to the documents-only context, reusing what is in memory", async () => {
    const c = await conversation();
    const docs = c.documentsPrompt()!.length;
    await c.ask("What rolled into the pond?");
    expect(c.snapshot().contextUsed).toBeGreaterThan(docs);
    await c.clear();
    expect(c.turns).toHaveLength(0);
    expect(c.snapshot().contextUsed).toBe(docs);
    const t = await c.ask("Who is Tom?");
    expect(t.stats.reusedTokens).toBeGreaterThanOrEqual(docs - 2);
  });

  it("leaves the oldest turns out when the context fills up, and says so", async () => {
    // (llama.cpp rounds contexts up to 256 tokens.)
    const c = await conversation({ files: [], contextSize: 256, maxTokens: 100 });
    const turns = [];
    for (let i = 0; i < 4; i++) turns.push(await c.ask(`Tell me story number ${i}.`));
    expect(turns.some((t) => t.droppedTurns > 0)).toBe(true);
    expect(c.turns).toHaveLength(4);
    for (const t of turns) expect(t.stats.promptTokens).toBeLessThan(256 - 100);
  });

  it("refuses documents that do not fit, with the tokens needed and a --ctx that fits", async () => {
    const err = await conversation({ contextSize: 256 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DocumentsTooLongError);
    const e = err as DocumentsTooLongError;
    expect(e.promptTokens).toBeGreaterThan(256);
    expect(e.fitContext).toBe(contextThatFits(e.promptTokens));
    expect(e.fitContext).toBeGreaterThanOrEqual(e.promptTokens + 64);
    expect(e.message).toBe(`story.txt needs ${e.promptTokens} tokens but the context holds 256; run with --ctx ${e.fitContext} or more`);
    expect(e.kind).toBe("input");
  });

  it("writes the transcript as Markdown and explains a failed save", async () => {
    const c = await conversation({ system: "Answer briefly." });
    const t = await c.ask("What colour is the ball?");
    const file = path.join(dir, "t.md");
    expect(await c.save(file)).toBe(file);
    const md = readFileSync(file, "utf8");
    expect(md).toMatch(/^# kvzap chat with stories260K\n/);
    expect(md).toMatch(/- document: story\.txt \(\d+ tokens\)/);
    expect(md).toContain("- system prompt: Answer briefly.");
    expect(md).toContain(`## You\n\nWhat colour is the ball?\n\n## stories260K\n\n${t.answer.trim()}\n`);
    expect(md).toMatch(/_16 tokens, [\d.]+ tokens\/s, stopped at --max-tokens_/);
    const bad = await c.save(path.join(dir, "missing", "t.md")).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(UserError);
    expect((bad as Error).message).toMatch(/could not save the transcript to .*missing.*: no such folder/);
  });

  it("close() stops a running answer and frees the model", async () => {
    const c = await conversation({ files: [], contextSize: 2048, maxTokens: 2000 });
    const running = c.ask("Once upon a time");
    await new Promise((r) => setTimeout(r, 20));
    await c.close();
    const turn = await running;
    expect(["abort", "maxTokens", "contextFull", "eog"]).toContain(turn.stopReason);
    await expect(c.ask("again?")).rejects.toThrow(/closed/);
  });
});

describe("the next turn reuses the answer's tokens", () => {
  for (const [name, file] of [
    ["stories260K", models.stories],
    ["testbed (chat template)", models.testbed],
  ] as const) {
    it(`${name}: the second turn evaluates only the end of the answer's turn and the new question`, async () => {
      const c = await openConversation({
        files: [story],
        loadModel: (onFraction) => Model.load(file, { onProgress: onFraction }),
        session: { contextSize: 2048, threads: 1 },
        // Sampled hot, the answer's tokens are often not the ones its text tokenizes to: only keeping the sampled
        // tokens lets the next turn reuse the answer.
        config: { maxTokens: 60, sampling: { temperature: 2, seed: 1, topK: 0, topP: 1, minP: 0 } },
        prefill: true,
      });
      opened.push(c);
      const first = await c.ask("What did Tom have?");
      expect(first.stats.generatedTokens).toBeGreaterThan(5);
      const question = "Where did the ball go?";
      const second = await c.ask(question);
      const evaluated = second.stats.promptTokens - second.stats.reusedTokens;
      // Everything up to the end of the first answer is reused: prompt and answer as they are in memory.
      expect(second.stats.reusedTokens).toBeGreaterThanOrEqual(first.stats.promptTokens + first.stats.generatedTokens - 1);
      const questionTokens = c.model.tokenize(question, { addSpecial: false }).length;
      expect(evaluated).toBeLessThanOrEqual(questionTokens + 24);
    });
  }
});

describe("load-time warnings", () => {
  it("warns when the documents leave too little room to answer, and says which --ctx would", async () => {
    const big = path.join(dir, "big.txt");
    writeFileSync(big, "Tom had a red ball. He played with it in the park every day. One day the ball rolled into the pond.\n".repeat(9));
    const full = await conversation({ files: [big], contextSize: 512, maxTokens: 200 });
    const docTokens = full.documentsPrompt()!.length;
    expect(512 - docTokens).toBeLessThan(64 + 200); // the fixture really is that full
    const [warning, ...rest] = full.loadWarnings();
    expect(rest).toEqual([]);
    expect(warning).toBe(
      `the documents fill ${docTokens} of the 512 tokens of the context: ${512 - docTokens} are left for a question and its answer, ` +
        `so answers will stop early; run with --ctx 1024 (or with fewer documents)`,
    );
    const roomy = await conversation({ files: [story], contextSize: 1024, maxTokens: 16 });
    expect(roomy.loadWarnings()).toEqual([]);
  });
});
