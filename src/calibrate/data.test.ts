// Calibration data: which files, how prompts are cut (lengths, determinism, boundaries), and the errors for too
// little or no text.
import { createHash } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { corpora, models } from "../../test/helpers/cli.js";
import { UserError } from "../base/errors.js";
import { Model } from "../engine/model.js";
import { HELD_OUT_FILE, promptLength, readCalibrationData, resolveDataPaths, selectPrompts, type Tokenizer } from "./data.js";

/** One token per word: a stand-in tokenizer whose counts are easy to reason about. */
const words: Tokenizer = {
  tokenize: (text) =>
    text
      .split(/\s+/)
      .filter(Boolean)
      .map((w) => w.length),
};

/** Paragraphs of sentences of numbered words, all different. */
function book(paragraphs: number, wordsPerParagraph: number, tag = "w"): string {
  let k = 0;
  return Array.from({ length: paragraphs }, () => {
    const ws = Array.from({ length: wordsPerParagraph }, (_, i) => `${tag}${k++}${i % 9 === 8 ? "." : ""}`);
    return ws.join(" ") + ".";
  }).join("\n\n");
}

describe("prompt lengths", () => {
  it("are the target ± 25% where they fit, and shrink to fit a context with the repetition", () => {
    expect(promptLength(1000, 4096, 31)).toEqual({ target: 1000, min: 750, max: 1250, scaled: false });
    // 2048: a prompt, its repetition, 31 tokens of instruction and one spare must fit → at most 1008
    const small = promptLength(1000, 2048, 31);
    expect(small).toEqual({ target: 806, min: 605, max: 1008, scaled: true });
    expect(2 * small.max + 31 + 1).toBeLessThanOrEqual(2048);
    // beyond one repeat chunk (2048) only one chunk is repeated at a time
    expect(promptLength(4000, 32768, 20).max).toBe(5000);
    expect(() => promptLength(1000, 40, 31)).toThrow(UserError);
  });
});

describe("prompts", () => {
  const data = {
    sources: [
      { path: "a.txt", text: book(60, 45, "a") },
      { path: "b.txt", text: book(40, 45, "b") },
    ],
  };
  const len = { target: 200, min: 150, max: 250, scaled: false };

  it("lie within [min, max] tokens, start and end on boundaries, and are the text of their offsets", () => {
    const { prompts, available } = selectPrompts(data, words, len, 8, 1);
    expect(prompts).toHaveLength(8);
    expect(available).toBeGreaterThanOrEqual(20);
    for (const p of prompts) {
      expect(p.tokens.length).toBeGreaterThanOrEqual(150);
      expect(p.tokens.length).toBeLessThanOrEqual(250);
      const src = data.sources.find((s) => s.path === p.file)!;
      expect(src.text.slice(p.start, p.end)).toBe(p.text);
      expect(p.text).toBe(p.text.trim());
      expect(p.text.endsWith(".")).toBe(true);
      expect(p.id).toBe(createHash("sha256").update(p.text).digest("hex").slice(0, 16));
    }
    expect(new Set(prompts.map((p) => p.id)).size).toBe(8);
    // both files contribute
    expect(new Set(prompts.map((p) => p.file)).size).toBe(2);
  });

  it("are the same for a seed and differ for another", () => {
    const a = selectPrompts(data, words, len, 6, 3).prompts.map((p) => p.id);
    const b = selectPrompts(data, words, len, 6, 3).prompts.map((p) => p.id);
    const c = selectPrompts(data, words, len, 6, 4).prompts.map((p) => p.id);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  it("take extras only where the data has them", () => {
    const tiny = { sources: [{ path: "t.txt", text: book(5, 45) }] };
    const n = selectPrompts(tiny, words, len, 1, 0).available;
    expect(selectPrompts(tiny, words, len, 1, 0, 50).prompts.length).toBeLessThanOrEqual(n);
  });

  it("too little text says what the data holds and what was asked", () => {
    const tiny = { sources: [{ path: "t.txt", text: book(9, 45) }] };
    let err: unknown;
    try {
      selectPrompts(tiny, words, len, 40, 0);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/^the data holds \d+ prompts? of ~200 tokens, --prompts asks for 40/);
  });

  it("cuts a text without blank lines at sentences and words", () => {
    const flat = { sources: [{ path: "f.txt", text: book(30, 45).replace(/\n\n/g, " ") }] };
    const { prompts } = selectPrompts(flat, words, len, 5, 2);
    for (const p of prompts) expect(p.tokens.length).toBeGreaterThanOrEqual(150);
  });

  it("with a real tokenizer, hold exactly the tokens of their text", async () => {
    const model = await Model.load(models.stories);
    try {
      const d = await readCalibrationData([path.join(corpora, "tinystories-train-head-944K.txt")]);
      const l = promptLength(300, 2048, 31);
      const { prompts } = selectPrompts(d, model, l, 5, 9);
      for (const p of prompts) {
        expect(p.tokens).toEqual(model.tokenize(p.text, { addSpecial: false }));
        expect(p.tokens.length).toBeGreaterThanOrEqual(l.min);
        expect(p.tokens.length).toBeLessThanOrEqual(l.max);
      }
    } finally {
      model.dispose();
    }
  });
});

describe("data files", () => {
  it("by default: the shared corpora without the held-out book, which --check uses", async () => {
    const r = await resolveDataPaths(undefined);
    expect(r.isDefault).toBe(true);
    expect(r.files.length).toBeGreaterThan(3);
    expect(r.files.some((f) => path.basename(f) === HELD_OUT_FILE)).toBe(false);
    expect(r.files.some((f) => /readme/i.test(f))).toBe(false);
    expect(r.checkFiles.map((f) => path.basename(f))).toEqual([HELD_OUT_FILE]);
  });

  it("hashes each file, skips files without text, and fails when none has any", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "kvzap-cal-data-"));
    const good = path.join(dir, "good.txt");
    const empty = path.join(dir, "empty.txt");
    const blank = path.join(dir, "blank.md");
    writeFileSync(good, "Some text.\n");
    writeFileSync(empty, "");
    writeFileSync(blank, "  \n\n\t\n");
    const d = await readCalibrationData([good, empty]);
    expect(d.sources.map((s) => s.text)).toEqual(["Some text."]);
    expect(d.files[0].sha256).toBe(createHash("sha256").update("Some text.\n").digest("hex"));
    expect(d.files[1].skipped).toMatch(/empty/);
    await expect(readCalibrationData([empty, blank])).rejects.toThrow(/the calibration data holds no text/);
    await expect(readCalibrationData([empty, blank])).rejects.toBeInstanceOf(UserError);
  });
});
