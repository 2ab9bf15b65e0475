import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { splitText } from "./index.js";

const CORPORA = new URL("../../../shared/corpora/", import.meta.url).pathname;
const sherlock = readFileSync(`${CORPORA}gutenberg-sherlock-holmes.txt`, "utf8").replace(/^\uFEFF/, "");
const tinyStories = readFileSync(`${CORPORA}tinystories-train-head-944K.txt`, "utf8").slice(0, 200_000);

/** Stand-ins for a tokenizer: this is text logic, any monotone count will do. */
const words = (s: string) => s.split(/\s+/).filter(Boolean).length;
const chars4 = (s: string) => Math.ceil(s.length / 4);
/** Not additive: counts grow faster than the sum of the parts, like a tokenizer that adds tokens at joints. */
const superadditive = (s: string) => words(s) + Math.floor(s.length / 40);
/** Adds a BOS token per call, so summed piece counts overestimate a chunk. */
const withBos = (s: string) => words(s) + 1;

function expectValid(chunks: string[], text: string, max: number, count: (s: string) => number): void {
  expect(chunks.join("")).toBe(text);
  for (const c of chunks) {
    expect(c.length).toBeGreaterThan(0);
    expect(count(c)).toBeLessThanOrEqual(max);
  }
}

describe("splitText", () => {
  it("returns nothing for empty text and the text itself when it fits", () => {
    expect(splitText("", 10, words)).toEqual([]);
    expect(splitText("One short paragraph.\n\nAnd another.", 100, words)).toEqual(["One short paragraph.\n\nAnd another."]);
  });

  it("covers a whole novel in order with every chunk within the limit", () => {
    for (const max of [50, 500, 2000]) {
      const chunks = splitText(sherlock, max, words);
      expectValid(chunks, sherlock, max, words);
      // Greedy packing wastes little: consecutive chunks could not have been merged.
      for (let i = 0; i + 1 < chunks.length; i++) expect(words(chunks[i] + chunks[i + 1])).toBeGreaterThan(max);
    }
  });

  it("cuts at paragraph boundaries when paragraphs fit", () => {
    const text = sherlock.slice(sherlock.indexOf("To Sherlock Holmes she is always"), 60_000);
    const chunks = splitText(text, 400, words);
    expectValid(chunks, text, 400, words);
    expect(chunks.length).toBeGreaterThan(5);
    for (const c of chunks.slice(0, -1)) expect(c).toMatch(/\n[^\S\n]*\n\s*$/);
  });

  it("falls back to sentence boundaries inside a paragraph that is too long", () => {
    // One paragraph of many sentences (Gutenberg lines are hard-wrapped, so collapse them).
    const para = sherlock
      .slice(sherlock.indexOf("To Sherlock Holmes she is always"))
      .split(/\n\s*\n/)
      .slice(0, 12)
      .join(" ")
      .replace(/\s+/g, " ");
    expect(words(para)).toBeGreaterThan(500);
    const chunks = splitText(para, 60, words);
    expectValid(chunks, para, 60, words);
    const sentenceEnds = chunks.slice(0, -1).filter((c) => /[.!?]["'”’)]*\s+$/.test(c));
    expect(sentenceEnds.length).toBeGreaterThanOrEqual(chunks.length - 3); // only overlong sentences cut elsewhere
  });

  it("hard-splits text with no boundaries at all", () => {
    const blob = "x".repeat(10_000);
    const chunks = splitText(blob, 100, chars4);
    expectValid(chunks, blob, 100, chars4);
    expect(chunks.length).toBe(25);
    expect(chunks.every((c) => c.length === 400)).toBe(true);
  });

  it("never splits a surrogate pair", () => {
    const emoji = "😀".repeat(301); // 602 UTF-16 units
    const perChar = (s: string) => [...s].length;
    const chunks = splitText(emoji, 7, perChar);
    expectValid(chunks, emoji, 7, perChar);
    for (const c of chunks) expect(c).toMatch(/^(?:😀)+$/u);
  });

  it("checks whole chunks with a count that is not additive", () => {
    for (const count of [superadditive, withBos]) {
      const chunks = splitText(tinyStories, 300, count);
      expectValid(chunks, tinyStories, 300, count);
    }
  });

  it("repeats the end of the previous chunk when asked for overlap, within the limit", () => {
    const text = sherlock.slice(0, 80_000);
    const max = 300;
    const overlap = 50;
    const chunks = splitText(text, max, words, { overlapTokens: overlap });
    const cores = splitText(text, max - overlap, words);
    expect(chunks.length).toBe(cores.length);
    expect(chunks[0]).toBe(cores[0]);
    for (let i = 1; i < chunks.length; i++) {
      expect(words(chunks[i])).toBeLessThanOrEqual(max);
      expect(chunks[i].endsWith(cores[i])).toBe(true);
      const prefix = chunks[i].slice(0, chunks[i].length - cores[i].length);
      expect(cores[i - 1].endsWith(prefix)).toBe(true);
      expect(words(prefix)).toBeLessThanOrEqual(overlap);
      expect(words(prefix)).toBeGreaterThan(overlap - 5); // it really overlaps, starting at a word
      expect(prefix).toMatch(/^\S/);
    }
  });

  it("rejects impossible limits", () => {
    expect(() => splitText("abc", 0, words)).toThrow(RangeError);
    expect(() => splitText("abc", 2.5, words)).toThrow(RangeError);
    expect(() => splitText("abc", 10, words, { overlapTokens: 10 })).toThrow(/overlapTokens/);
    expect(() => splitText("abc", 10, words, { overlapTokens: -1 })).toThrow(RangeError);
    const twoPerChar = (s: string) => s.length * 2;
    expect(() => splitText("abc", 1, twoPerChar)).toThrow(/single character "a" counts 2 tokens/);
  });
});
