import { describe, expect, it } from "vitest";
import { InputHistory } from "./input-history.js";

describe("InputHistory", () => {
  it("walks back and forth like a shell, keeping the draft", () => {
    const h = new InputHistory(["first", "second"]);
    expect(h.newer()).toBeUndefined();
    expect(h.older("my draft")).toBe("second");
    expect(h.older("second")).toBe("first");
    expect(h.older("first")).toBeUndefined();
    expect(h.newer()).toBe("second");
    expect(h.newer()).toBe("my draft");
    expect(h.newer()).toBeUndefined();
  });

  it("skips blank lines and immediate repeats, restarts at the newest after a push, and keeps at most `limit`", () => {
    const h = new InputHistory([], 3);
    for (const e of ["a", "a", "  ", "b", "c", "d"]) h.push(e);
    expect(h.size).toBe(3);
    expect(h.older("")).toBe("d");
    h.push("e");
    expect(h.older("")).toBe("e");
    expect(h.older("")).toBe("d");
    expect(h.older("")).toBe("c");
    expect(h.older("")).toBeUndefined();
  });
});
