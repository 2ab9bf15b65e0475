import { describe, expect, it } from "vitest";
import { matchPath, matchSegment, splitPattern } from "./glob.js";

describe("glob matching", () => {
  it("splits a pattern into its literal base and the rest", () => {
    expect(splitPattern("docs/**/*.pdf")).toEqual({ base: "docs", segments: ["**", "*.pdf"] });
    expect(splitPattern("*.md")).toEqual({ base: ".", segments: ["*.md"] });
    expect(splitPattern("/tmp/x/a?.txt")).toEqual({ base: "/tmp/x", segments: ["a?.txt"] });
    expect(splitPattern("./a/b/*")).toEqual({ base: "a/b", segments: ["*"] });
  });

  it("matches * and ? within a segment, literally otherwise", () => {
    expect(matchSegment("*.pdf", "report.pdf")).toBe(true);
    expect(matchSegment("*.pdf", "report.pdfx")).toBe(false);
    expect(matchSegment("r?port.pdf", "report.pdf")).toBe(true);
    expect(matchSegment("r?port.pdf", "rport.pdf")).toBe(false);
    expect(matchSegment("a+b(1).txt", "a+b(1).txt")).toBe(true);
    expect(matchSegment("*.txt", ".hidden.txt")).toBe(false);
    expect(matchSegment(".*.txt", ".hidden.txt")).toBe(true);
  });

  it("lets ** span zero or more folders", () => {
    expect(matchPath(["**", "*.pdf"], ["a.pdf"])).toBe(true);
    expect(matchPath(["**", "*.pdf"], ["x", "y", "a.pdf"])).toBe(true);
    expect(matchPath(["**", "*.pdf"], [".git", "a.pdf"])).toBe(false);
    expect(matchPath(["a", "**", "b", "*.md"], ["a", "b", "c.md"])).toBe(true);
    expect(matchPath(["a", "**", "b", "*.md"], ["a", "x", "b", "c.md"])).toBe(true);
    expect(matchPath(["a", "**", "b", "*.md"], ["a", "x", "c.md"])).toBe(false);
    expect(matchPath(["*"], ["a", "b"])).toBe(false);
  });
});
