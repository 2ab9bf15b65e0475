import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Model } from "../engine/model.js";
import {
  DEFAULT_TEMPLATE,
  PromptBuilder,
  checkTemplate,
  commonBase,
  planInputs,
  removeStaleTemps,
  renderTemplate,
  summarizeText,
  summaryName,
  tempNameFor,
  writeFileAtomic,
} from "./summarize.js";

const sharedDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "shared");
const storiesModel = path.join(sharedDir, "models", "stories260K.gguf");
const tinyStories = path.join(sharedDir, "corpora", "tinystories-train-head-944K.txt");

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-summarize-unit-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("prompt template", () => {
  it("fills {{document}} and {{name}} in one pass, leaving placeholders inside the document alone", () => {
    const out = renderTemplate("About {{name}}:\n{{ document }}\n({{name}})", { document: "a {{name}} b $& $1", name: "q1.pdf" });
    expect(out).toBe("About q1.pdf:\na {{name}} b $& $1\n(q1.pdf)");
  });

  it("refuses a template without {{document}}", () => {
    expect(() => checkTemplate("Summarize {{name}}")).toThrow(/no \{\{document\}\} placeholder/);
    expect(() => checkTemplate(DEFAULT_TEMPLATE)).not.toThrow();
  });
});

describe("output names", () => {
  it("uses the path below the common base, so same-named files in different folders never collide", () => {
    expect(commonBase(["/w/docs/reports", "/w/docs/notes"])).toBe("/w/docs");
    expect(commonBase(["/w/docs"])).toBe("/w/docs");
    expect(commonBase(["/a", "/b"])).toBe("/");
    expect(summaryName("/w/docs", "/w/docs/reports/q1.pdf")).toBe("reports/q1.pdf.summary.md");
    expect(summaryName("/w/docs", "/w/docs/notes/q1.pdf")).toBe("notes/q1.pdf.summary.md");
  });

  it("plans folders, globs and files; skips DIR's own files; reports a missing path and goes on", async () => {
    const root = path.join(dir, "plan");
    await mkdir(path.join(root, "docs", "reports"), { recursive: true });
    await mkdir(path.join(root, "docs", "notes"), { recursive: true });
    await mkdir(path.join(root, "docs", "out", "reports"), { recursive: true });
    await writeFile(path.join(root, "docs", "reports", "q1.md"), "one");
    await writeFile(path.join(root, "docs", "notes", "q1.md"), "two");
    await writeFile(path.join(root, "docs", "out", "reports", "q1.md.summary.md"), "an earlier summary");
    const d = (p: string) => path.join(root, p);

    const plan = await planInputs([d("docs"), d("docs/notes/q1.md"), d("missing.txt")], d("docs/out"));
    expect(plan.map((p) => [path.relative(root, p.path), p.output])).toEqual([
      ["docs/notes/q1.md", "docs/notes/q1.md.summary.md"],
      ["docs/reports/q1.md", "docs/reports/q1.md.summary.md"],
      ["missing.txt", null],
    ]);
    expect(plan[2].problem).toMatch(/missing\.txt: no such file or folder/);

    const globbed = await planInputs([d("docs/*/q1.md")], d("docs/out"));
    expect(globbed.map((p) => p.output)).toEqual(["notes/q1.md.summary.md", "reports/q1.md.summary.md"]);
    const single = await planInputs([d("docs/reports/q1.md")], d("elsewhere"));
    expect(single.map((p) => p.output)).toEqual(["q1.md.summary.md"]);
  });
});

describe("atomic writes", () => {
  it("renames a complete file into place and leaves no temp file", async () => {
    const target = path.join(dir, "atomic", "sub", "a.txt.summary.md");
    await writeFileAtomic(target, "first\n");
    await writeFileAtomic(target, "second\n");
    expect(await readFile(target, "utf8")).toBe("second\n");
    expect(await readdir(path.dirname(target))).toEqual(["a.txt.summary.md"]);
  });

  it("deletes temp files of dead processes only, and never a summary", async () => {
    const folder = path.join(dir, "stale", "deep");
    await mkdir(folder, { recursive: true });
    const target = path.join(folder, "x.md.summary.md");
    const mine = tempNameFor(target);
    const dead = path.join(folder, ".x.md.summary.md.2147483646.0123abcd.tmp");
    await writeFile(mine, "half");
    await writeFile(dead, "half");
    await writeFile(target, "whole");
    expect(path.basename(mine)).toMatch(/^\.x\.md\.summary\.md\.\d+\.[0-9a-f]{8}\.tmp$/);
    expect(await removeStaleTemps(path.join(dir, "stale"))).toBe(1);
    expect((await readdir(folder)).sort()).toEqual([path.basename(mine), "x.md.summary.md"].sort());
  });
});

describe("summarizeText on the real model", () => {
  let model: Model;
  beforeAll(async () => {
    model = await Model.load(storiesModel);
  });
  afterAll(() => model?.dispose());

  it("maps chunks, then combines their summaries in rounds when they do not fit one call", async () => {
    const session = await model.createSession({ contextSize: 256 });
    const prompts = new PromptBuilder(model);
    const text = (await readFile(tinyStories, "utf8")).slice(0, 3000);
    const steps: string[] = [];
    const counts = { tokensIn: 0, tokensOut: 0, chunks: 0 };
    const summary = await summarizeText({ model, session }, prompts, text, {
      template: DEFAULT_TEMPLATE,
      name: "stories.txt",
      maxTokens: 16,
      temperature: 0,
      counts,
      onStep: (label) => steps.push(label),
    });
    expect(summary.length).toBeGreaterThan(0);
    expect(counts.chunks).toBeGreaterThan(4);
    const maps = steps.filter((s) => s.startsWith("part "));
    expect(maps).toHaveLength(counts.chunks);
    // Some round combined a range of parts, and the last call combined everything under the document's own name.
    expect(steps.some((s) => /^combining parts \d+-\d+ of \d+$/.test(s))).toBe(true);
    expect(steps[steps.length - 1]).toMatch(/^combining/);
    expect(counts.tokensOut).toBeLessThanOrEqual(16 * steps.length);
    expect(counts.tokensIn).toBeGreaterThan(prompts.count(text));
    session.dispose();
  });
});
