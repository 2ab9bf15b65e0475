import { describe, expect, it } from "vitest";
import { EMPTY_LINE, editLine, lineOf, type LineState } from "./line-editor.js";

function keys(start: LineState, ...steps: [string, Record<string, boolean>?][]): LineState {
  let s = start;
  for (const [input, key] of steps) {
    const r = editLine(s, input, key ?? {});
    if (r.kind !== "ignored") s = r.state;
  }
  return s;
}

describe("editLine", () => {
  it("inserts typed text and pastes at the cursor", () => {
    expect(keys(EMPTY_LINE, ["h"], ["i"])).toEqual({ value: "hi", cursor: 2 });
    expect(keys(lineOf("held"), ["", { leftArrow: true }], ["", { leftArrow: true }], ["llo wor"])).toEqual({ value: "hello world", cursor: 9 });
  });

  it("moves with arrows, Home/End and Ctrl-A/E/B/F, by word with Alt or Ctrl", () => {
    const s = lineOf("one two three");
    expect(keys(s, ["", { home: true }]).cursor).toBe(0);
    expect(keys(s, ["a", { ctrl: true }], ["", { end: true }]).cursor).toBe(13);
    expect(keys(s, ["a", { ctrl: true }], ["e", { ctrl: true }]).cursor).toBe(13);
    expect(keys(s, ["b", { ctrl: true }], ["b", { ctrl: true }], ["f", { ctrl: true }]).cursor).toBe(12);
    expect(keys(s, ["", { leftArrow: true, meta: true }]).cursor).toBe(8);
    expect(keys(s, ["", { leftArrow: true, ctrl: true }], ["", { leftArrow: true, ctrl: true }]).cursor).toBe(4);
    expect(keys(s, ["", { home: true }], ["", { rightArrow: true, meta: true }]).cursor).toBe(3);
    expect(keys(s, ["", { rightArrow: true }]).cursor).toBe(13);
    expect(keys(EMPTY_LINE, ["", { leftArrow: true }]).cursor).toBe(0);
  });

  it("deletes: Backspace (reported as delete or backspace) before the cursor, Ctrl-D under it, Ctrl-U/K/W", () => {
    const s = lineOf("one two three");
    expect(keys(s, ["", { delete: true }]).value).toBe("one two thre");
    expect(keys(s, ["", { backspace: true }]).value).toBe("one two thre");
    expect(keys(s, ["", { home: true }], ["", { backspace: true }])).toEqual({ value: "one two three", cursor: 0 });
    expect(keys(s, ["", { home: true }], ["d", { ctrl: true }])).toEqual({ value: "ne two three", cursor: 0 });
    expect(keys(s, ["", { leftArrow: true, meta: true }], ["u", { ctrl: true }])).toEqual({ value: "three", cursor: 0 });
    expect(keys(s, ["", { leftArrow: true, meta: true }], ["k", { ctrl: true }])).toEqual({ value: "one two ", cursor: 8 });
    expect(keys(s, ["w", { ctrl: true }])).toEqual({ value: "one two ", cursor: 8 });
    expect(keys(s, ["", { backspace: true, meta: true }]).value).toBe("one two ");
  });

  it("keeps surrogate pairs whole", () => {
    const s = lineOf("a🍰b");
    expect(keys(s, ["", { leftArrow: true }], ["", { leftArrow: true }]).cursor).toBe(1);
    expect(keys(s, ["", { leftArrow: true }], ["", { backspace: true }])).toEqual({ value: "ab", cursor: 1 });
  });

  it("submits on Enter and on a paste that ends with a line break; inner line breaks stay", () => {
    expect(editLine(lineOf("hi"), "", { return: true })).toEqual({ kind: "submit", state: lineOf("hi") });
    expect(editLine(EMPTY_LINE, "question\r", {})).toEqual({ kind: "submit", state: lineOf("question") });
    expect(editLine(EMPTY_LINE, "a\r\nb", {})).toEqual({ kind: "edit", state: lineOf("a\nb") });
  });

  it("leaves keys it does not edit with to the caller, and drops control characters", () => {
    for (const key of [{ upArrow: true }, { downArrow: true }, { tab: true }, { escape: true, meta: true }, { pageUp: true }]) {
      expect(editLine(lineOf("x"), "", key).kind).toBe("ignored");
    }
    expect(editLine(lineOf("x"), "c", { ctrl: true }).kind).toBe("ignored");
    expect(editLine(EMPTY_LINE, "d", { ctrl: true }).kind).toBe("ignored");
    expect(keys(EMPTY_LINE, ["a\x07b\tc"]).value).toBe("ab  c");
  });
});
