// Editing one input line, as a pure function of (state, key): shell/readline keys, pastes, and where the cursor goes.
import type { Key } from "ink";

export interface LineState {
  value: string;
  /** Index into `value` (UTF-16 units, always on a code-point boundary). */
  cursor: number;
}

export const EMPTY_LINE: LineState = { value: "", cursor: 0 };

export type EditResult =
  /** The key changed (or deliberately kept) the line. */
  | { kind: "edit"; state: LineState }
  /** Enter: submit `state.value` (a paste that ends in a line break also submits). */
  | { kind: "submit"; state: LineState }
  /** Not an editing key: the caller may use it (arrows up/down, Ctrl-C, Tab, …). */
  | { kind: "ignored" };

type KeyLike = Partial<Key>;

export function lineOf(value: string): LineState {
  return { value, cursor: value.length };
}

/**
 * Applies one keypress. Ink reports the Backspace key (DEL, 0x7f) as `delete`, the same as the Delete key, so both
 * delete the character before the cursor; Ctrl-D deletes the one under it.
 */
export function editLine(s: LineState, input: string, key: KeyLike): EditResult {
  const edit = (value: string, cursor: number): EditResult => ({ kind: "edit", state: { value, cursor } });
  const { value, cursor } = s;

  if (key.return) return { kind: "submit", state: s };
  if (key.backspace || key.delete) {
    if (key.meta) return deleteWordBefore(s);
    if (cursor === 0) return { kind: "edit", state: s };
    const from = prevBoundary(value, cursor);
    return edit(value.slice(0, from) + value.slice(cursor), from);
  }
  if (key.leftArrow) return edit(value, key.ctrl || key.meta ? wordLeft(value, cursor) : prevBoundary(value, cursor));
  if (key.rightArrow) return edit(value, key.ctrl || key.meta ? wordRight(value, cursor) : nextBoundary(value, cursor));
  if (key.home) return edit(value, 0);
  if (key.end) return edit(value, value.length);

  if (key.ctrl) {
    switch (input) {
      case "a":
        return edit(value, 0);
      case "e":
        return edit(value, value.length);
      case "b":
        return edit(value, prevBoundary(value, cursor));
      case "f":
        return edit(value, nextBoundary(value, cursor));
      case "d":
        if (value === "") return { kind: "ignored" };
        return edit(value.slice(0, cursor) + value.slice(nextBoundary(value, cursor)), cursor);
      case "u":
        return edit(value.slice(cursor), 0);
      case "k":
        return edit(value.slice(0, cursor), cursor);
      case "w":
        return deleteWordBefore(s);
      default:
        return { kind: "ignored" };
    }
  }
  if (key.meta && !key.escape) {
    if (input === "b") return edit(value, wordLeft(value, cursor));
    if (input === "f") return edit(value, wordRight(value, cursor));
    return { kind: "ignored" };
  }
  if (key.upArrow || key.downArrow || key.pageUp || key.pageDown || key.tab || key.escape || input === "") return { kind: "ignored" };

  // Typed text or a paste: line breaks inside stay (multi-line questions), a final one submits.
  let text = input.replace(/\r\n?/g, "\n");
  let submit = false;
  if (text.endsWith("\n")) {
    text = text.slice(0, -1);
    submit = true;
  }
  text = text.replace(/\t/g, "  ").replace(/[\x00-\x09\x0b-\x1f\x7f]/g, "");
  const next = { value: value.slice(0, cursor) + text + value.slice(cursor), cursor: cursor + text.length };
  return { kind: submit ? "submit" : "edit", state: next };
}

function deleteWordBefore(s: LineState): EditResult {
  const from = wordLeft(s.value, s.cursor);
  return { kind: "edit", state: { value: s.value.slice(0, from) + s.value.slice(s.cursor), cursor: from } };
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

function prevBoundary(v: string, i: number): number {
  if (i <= 0) return 0;
  return i >= 2 && isLowSurrogate(v.charCodeAt(i - 1)) ? i - 2 : i - 1;
}

function nextBoundary(v: string, i: number): number {
  if (i >= v.length) return v.length;
  return i + 1 < v.length && isLowSurrogate(v.charCodeAt(i + 1)) ? i + 2 : i + 1;
}

function wordLeft(v: string, i: number): number {
  let j = i;
  while (j > 0 && /\s/.test(v[j - 1])) j--;
  while (j > 0 && !/\s/.test(v[j - 1])) j--;
  return j;
}

function wordRight(v: string, i: number): number {
  let j = i;
  while (j < v.length && /\s/.test(v[j])) j++;
  while (j < v.length && !/\s/.test(v[j])) j++;
  return j;
}
