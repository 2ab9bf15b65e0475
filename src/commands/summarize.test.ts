import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Model } from "../engine/model.js";
import { DEFAULT_TEMPLATE, PromptBuilder, checkTemplate, planInputs, removeStaleTemps, renderTemplate, summarizeText, summaryName } from "./summarize.js";
import { writeFileAtomic } from "../base/files.js";
import { PartCache } from "./summarize/part-cache.js";
import { ReportFile, changedSettings, type ReportEntry } from "./summarize/report.js";
import { lockOutputFolder } from "./summarize/folder-lock.js";

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

  it("refuses a template with {{document}} twice, which would fill the context twice over", () => {
    expect(() => checkTemplate("{{document}}\n\nAgain:\n{{ document }}")).toThrow(/\{\{document\}\} 2 times; use it once/);
  });
});

describe("output names", () => {
  it("uses the path below the base, so same-named files in different folders never collide", () => {
    expect(summaryName("/w/docs", "/w/docs/reports/q1.pdf")).toBe("reports/q1.pdf.summary.md");
    expect(summaryName("/w/docs", "/w/docs/notes/q1.pdf")).toBe("notes/q1.pdf.summary.md");
    expect(summaryName("/w/docs", "/elsewhere/q1.pdf")).toBe("elsewhere/q1.pdf.summary.md");
  });

  it("names an input's summary the same whatever other arguments the run has", async () => {
    const root = path.join(dir, "stable");
    await mkdir(path.join(root, "docs", "a"), { recursive: true });
    await mkdir(path.join(root, "other"), { recursive: true });
    await writeFile(path.join(root, "docs", "a", "x.md"), "one");
    await writeFile(path.join(root, "other", "y.md"), "two");
    const d = (p: string) => path.join(root, p);
    const alone = await planInputs([d("docs/a")], d("out"), { base: root });
    const more = await planInputs([d("docs/a"), d("other/y.md")], d("out"), { base: root });
    expect(alone.map((p) => p.output)).toEqual(["docs/a/x.md.summary.md"]);
    expect(more.map((p) => p.output)).toEqual(["docs/a/x.md.summary.md", "other/y.md.summary.md"]);
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

    const plan = await planInputs([d("docs"), d("docs/notes/q1.md"), d("missing.txt")], d("docs/out"), { base: root });
    expect(plan.map((p) => [path.relative(root, p.path), p.output])).toEqual([
      ["docs/notes/q1.md", "docs/notes/q1.md.summary.md"],
      ["docs/reports/q1.md", "docs/reports/q1.md.summary.md"],
      ["missing.txt", null],
    ]);
    expect(plan[2].problem).toMatch(/missing\.txt: no such file or folder/);

    const globbed = await planInputs([d("docs/*/q1.md")], d("docs/out"), { base: d("docs") });
    expect(globbed.map((p) => p.output)).toEqual(["notes/q1.md.summary.md", "reports/q1.md.summary.md"]);
    const single = await planInputs([d("docs/reports/q1.md")], d("elsewhere"), { base: d("docs/reports") });
    expect(single.map((p) => p.output)).toEqual(["q1.md.summary.md"]);
  });

  it("reports a dangling link and a link loop inside a folder as inputs with a problem", async () => {
    const root = path.join(dir, "links");
    await mkdir(path.join(root, "docs", "sub"), { recursive: true });
    await writeFile(path.join(root, "docs", "ok.md"), "fine");
    await symlink(path.join(root, "docs", "gone.md"), path.join(root, "docs", "dead.md"));
    await symlink(path.join(root, "docs"), path.join(root, "docs", "sub", "up"));
    await symlink("self.md", path.join(root, "docs", "self.md"));
    const plan = await planInputs([path.join(root, "docs")], path.join(root, "out"), { base: root });
    const problems = plan.filter((p) => p.output === null).map((p) => [path.relative(root, p.path), p.problem]);
    expect(problems).toEqual([
      ["docs/dead.md", expect.stringMatching(/docs\/dead\.md: a dangling symbolic link \(its target .*gone\.md does not exist\)/)],
      ["docs/self.md", expect.stringMatching(/a symbolic link loop/)],
      ["docs/sub/up", expect.stringMatching(/docs\/sub\/up: a symbolic link loop \(it leads back to .*docs\)/)],
    ]);
    expect(plan.filter((p) => p.output !== null).map((p) => p.output)).toEqual(["docs/ok.md.summary.md"]);
  });
});

describe("atomic writes", () => {
  it("deletes temp files of dead processes only (the atomic write's), and never a summary", async () => {
    const folder = path.join(dir, "stale", "deep");
    await mkdir(folder, { recursive: true });
    const target = path.join(folder, "x.md.summary.md");
    const mine = path.join(folder, `.x.md.summary.md.${process.pid}.0123abcd.tmp`);
    const dead = path.join(folder, ".x.md.summary.md.2147483646.0123abcd.tmp");
    await writeFile(mine, "half");
    await writeFile(dead, "half");
    await writeFileAtomic(target, Buffer.from("whole"));
    expect(await removeStaleTemps(path.join(dir, "stale"))).toBe(1);
    expect((await readdir(folder)).sort()).toEqual([path.basename(mine), "x.md.summary.md"].sort());
  });
});

describe("the report", () => {
  const line = (p: string, status: ReportEntry["status"], extra: Partial<ReportEntry> = {}): ReportEntry => ({
    path: p,
    status,
    output: status === "error" ? null : `${p}.summary.md`,
    error: status === "error" ? `${p}: bad` : null,
    tokensIn: 10,
    tokensOut: 5,
    seconds: 1,
    chunks: 1,
    ...extra,
  });

  it("merges over runs: a skip keeps the line that made the summary, a redo replaces it, others stay", async () => {
    const file = path.join(dir, "report-merge", "report.jsonl");
    const first = await ReportFile.open(file);
    await first.record(line("a.txt", "ok", { settings: { maxTokens: 24 } }), "a.txt.summary.md");
    await first.record(line("b.txt", "ok"), "b.txt.summary.md");
    await first.record(line("c.txt", "error"), "c.txt.summary.md");
    const second = await ReportFile.open(file);
    expect(second.previous("a.txt.summary.md")?.settings).toEqual({ maxTokens: 24 });
    await second.record(line("a.txt", "skipped", { tokensIn: 0 }), "a.txt.summary.md");
    await second.record(line("c.txt", "ok", { tokensIn: 99 }), "c.txt.summary.md");
    const lines = (await readFile(file, "utf8"))
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as ReportEntry);
    expect(lines.map((l) => [l.path, l.status, l.tokensIn])).toEqual([
      ["a.txt", "ok", 10],
      ["b.txt", "ok", 10],
      ["c.txt", "ok", 99],
    ]);
  });

  it("names the settings that changed since a summary was made", () => {
    expect(changedSettings({ maxTokens: 24, temperature: 0 }, { maxTokens: 32, temperature: 0 })).toEqual(["maxTokens 24 → 32"]);
    expect(changedSettings(undefined, { maxTokens: 32 })).toEqual([]);
  });
});

describe("the output folder lock", () => {
  it("refuses a second holder while the first lives, naming its pid, and frees on release", async () => {
    const folder = path.join(dir, "locked");
    await mkdir(folder, { recursive: true });
    const held = await lockOutputFolder(folder);
    // A holder that is another live process (our parent) looks the same as a second kvzap run.
    await writeFile(path.join(folder, ".kvzap-summarize.lock"), JSON.stringify({ pid: process.ppid, host: os.hostname(), since: "" }));
    await expect(lockOutputFolder(folder)).rejects.toThrow(new RegExp(`in use by another kvzap summarize \\(pid ${process.ppid}`));
    // A lock left by a dead process is taken over.
    await writeFile(path.join(folder, ".kvzap-summarize.lock"), JSON.stringify({ pid: 2147483646, host: os.hostname(), since: "" }));
    const again = await lockOutputFolder(folder);
    await again.release();
    await held.release();
    expect(await readdir(folder)).toEqual([]);
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

  it("keeps part summaries in the part cache, so a run stopped mid-input resumes at the next part", async () => {
    const session = await model.createSession({ contextSize: 256 });
    const prompts = new PromptBuilder(model);
    const text = (await readFile(tinyStories, "utf8")).slice(0, 2000);
    const base = { template: DEFAULT_TEMPLATE, name: "stories.txt", maxTokens: 16, temperature: 0 };
    const settings = { model: "stories", maxTokens: 16 };
    const reference = await summarizeText({ model, session }, prompts, text, { ...base, counts: { tokensIn: 0, tokensOut: 0, chunks: 0 } });

    const out = path.join(dir, "parts");
    const stop = new AbortController();
    const first = await PartCache.open(out, "stories.txt.summary.md", settings);
    const firstCalls: boolean[] = [];
    let split: number[] = [];
    await expect(
      summarizeText({ model, session }, prompts, text, {
        ...base,
        signal: stop.signal,
        counts: { tokensIn: 0, tokensOut: 0, chunks: 0 },
        cache: first,
        onSplit: (parts, calls, cached) => (split = [parts, calls, cached]),
        onCalled: (_l, done, _t, _s, cached) => {
          firstCalls.push(cached);
          if (done === 3) stop.abort();
        },
      }),
    ).rejects.toThrow();
    expect(split[0]).toBeGreaterThan(3);
    expect(split[1]).toBeGreaterThan(split[0]);
    expect(split[2]).toBe(0);
    expect(firstCalls).toEqual([false, false, false]);

    const second = await PartCache.open(out, "stories.txt.summary.md", settings);
    expect(second.size).toBe(3);
    const secondCalls: boolean[] = [];
    const counts = { tokensIn: 0, tokensOut: 0, chunks: 0 };
    const resumed = await summarizeText({ model, session }, prompts, text, {
      ...base,
      counts,
      cache: second,
      onSplit: (_p, _c, cached) => expect(cached).toBe(3),
      onCalled: (_l, _d, _t, _s, cached) => secondCalls.push(cached),
    });
    expect(resumed).toBe(reference);
    expect(secondCalls.slice(0, 3)).toEqual([true, true, true]);
    expect(secondCalls.slice(3).every((c) => !c)).toBe(true);
    // Other settings make other answers: nothing of this cache is used for them.
    const other = await PartCache.open(out, "stories.txt.summary.md", { model: "stories", maxTokens: 17 });
    expect(other.get(other.keyFor("anything"))).toBeUndefined();
    session.dispose();
  });
});
