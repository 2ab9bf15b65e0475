import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PDFDocument, StandardFonts } from "pdf-lib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ReportEntry } from "../../src/commands/summarize.js";
import { corpora, expectCleanFailure, kvzap, models, repoRoot } from "../helpers/cli.js";

type Line = ReportEntry;

// Small answers, greedy, a small context: fast, deterministic, and long inputs really need chunks.
const FAST = ["--model", models.stories, "--max-tokens", "24", "--temp", "0", "--ctx", "512"];

let work: string;
let stories: string;
let configDir: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), "kvzap-summarize-e2e-"));
  configDir = await mkdtemp(path.join(os.tmpdir(), "kvzap-summarize-config-"));
  stories = await readFile(path.join(corpora, "tinystories-train-head-944K.txt"), "utf8");
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
  await rm(configDir, { recursive: true, force: true });
});

/** Every file under `dir`, hidden ones included, as sorted relative paths. */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await visit(p);
      else out.push(path.relative(dir, p));
    }
  };
  await visit(dir);
  return out.sort();
}

async function readReport(dir: string): Promise<Line[]> {
  const text = await readFile(path.join(dir, "report.jsonl"), "utf8");
  expect(text.endsWith("\n") || text === "").toBe(true);
  return text
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Line);
}

async function summaries(dir: string): Promise<Map<string, string>> {
  const files = (await listFiles(dir)).filter((f) => f.endsWith(".summary.md"));
  return new Map(await Promise.all(files.map(async (f) => [f, await readFile(path.join(dir, f), "utf8")] as [string, string])));
}

/** The n-th short story of the corpus (stories are separated by blank lines): one call at --ctx 512 summarizes it. */
function story(n: number): string {
  const all = stories.split(/\n\s*\n/).filter((s) => s.trim().length >= 300 && s.trim().length <= 600);
  return all[n % all.length].trim() + "\n";
}

async function makePdf(file: string, text: string): Promise<void> {
  const pdf = await PDFDocument.create();
  const font = await pdf.embedFont(StandardFonts.Helvetica);
  const page = pdf.addPage([595, 842]);
  page.drawText(text, { x: 50, y: 790, size: 11, font, maxWidth: 495, lineHeight: 15 });
  await writeFile(file, await pdf.save());
}

/** The built CLI as a child process we can signal, with the same isolation as the kvzap() helper. */
function spawnCli(
  args: string[],
  cwd: string,
): { child: ChildProcess; done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, [path.join(repoRoot, "bin", "kvzap.js"), ...args], {
    cwd,
    env: { ...process.env, KVZAP_CONFIG_DIR: configDir, KVZAP_MODEL: "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done };
}

async function waitForSummary(dir: string, exited: Promise<unknown>): Promise<void> {
  let over = false;
  void exited.then(() => (over = true));
  for (;;) {
    const found = await listFiles(dir).catch(() => [] as string[]);
    if (found.some((f) => f.endsWith(".summary.md"))) return;
    if (over) throw new Error("the run ended before its first summary appeared");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A folder of `n` short stories. */
async function storyFolder(name: string, n: number): Promise<string> {
  const folder = path.join(work, name);
  await mkdir(folder, { recursive: true });
  for (let i = 0; i < n; i++) await writeFile(path.join(folder, `story-${String(i).padStart(2, "0")}.txt`), story(i * 7 + 3));
  return folder;
}

describe("kvzap summarize", () => {
  it("summarizes good inputs, reports bad ones clearly, resumes, and redoes with --force", async () => {
    const cwd = path.join(work, "mixed");
    const docs = path.join(cwd, "docs");
    await mkdir(path.join(docs, "notes"), { recursive: true });
    await makePdf(path.join(docs, "report.pdf"), story(1).slice(0, 300));
    await writeFile(path.join(docs, "story.txt"), story(2));
    await writeFile(path.join(docs, "notes", "plan.md"), `# Plan\n\n${story(3)}`);
    await writeFile(path.join(docs, "broken.pdf"), Buffer.concat([Buffer.from("garbage:"), randomBytes(3000)]));
    await writeFile(path.join(docs, "empty.pdf"), "");
    const expected = ["docs/notes/plan.md.summary.md", "docs/report.pdf.summary.md", "docs/story.txt.summary.md"];

    const first = await kvzap(["summarize", "docs", "--out", "out", ...FAST, "--json"], { cwd });
    expectCleanFailure(first);
    expect(first.code).toBe(1);
    const json = JSON.parse(first.stdout);
    expect(json).toMatchObject({ total: 5, ok: 3, skipped: 0, failed: 2, interrupted: false });
    expect(json.results).toHaveLength(5);
    expect(await listFiles(path.join(cwd, "out"))).toEqual([...expected, "report.jsonl"].sort());
    const report = await readReport(path.join(cwd, "out"));
    expect(report.map(({ at, ...l }) => (expect(at).toMatch(/^\d{4}-/), l))).toEqual(json.results);
    const byPath = new Map(report.map((l) => [l.path, l]));
    expect(byPath.get("docs/broken.pdf")).toMatchObject({ status: "error", output: null, chunks: 0 });
    expect(byPath.get("docs/broken.pdf")!.error).toMatch(/^docs\/broken\.pdf: not a PDF file/);
    expect(byPath.get("docs/empty.pdf")).toMatchObject({ status: "error", output: null, error: "docs/empty.pdf: the file is empty" });
    for (const p of ["docs/report.pdf", "docs/story.txt", "docs/notes/plan.md"]) {
      const l = byPath.get(p)!;
      expect(l).toMatchObject({ status: "ok", error: null, chunks: 1 });
      expect(l.tokensIn).toBeGreaterThan(20);
      expect(l.tokensOut).toBeGreaterThan(0);
      expect(l.tokensOut).toBeLessThanOrEqual(24);
      expect(l.seconds).toBeGreaterThanOrEqual(0);
      expect((await readFile(path.join(cwd, "out", l.output!), "utf8")).trim().length).toBeGreaterThan(0);
    }
    // Non-TTY progress: one line per input on stderr.
    expect(first.stderr.split("\n").filter((l) => /^\[\d\/5\] /.test(l))).toHaveLength(5);
    const before = await summaries(path.join(cwd, "out"));
    const mtimes = await Promise.all(expected.map(async (f) => (await stat(path.join(cwd, "out", f))).mtimeMs));

    const again = await kvzap(["summarize", "docs", "--out", "out", ...FAST], { cwd });
    expect(again.code).toBe(1);
    expect(again.stderr).not.toMatch(/loading/); // nothing to summarize: the model is not even loaded
    // The report merges: the lines of the run that made each summary stay as they were, errors are written again.
    const rerun = await readReport(path.join(cwd, "out"));
    expect(rerun.filter((l) => l.status === "ok")).toEqual(report.filter((l) => l.status === "ok"));
    expect(rerun.filter((l) => l.status === "error").map((l) => l.error)).toEqual(report.filter((l) => l.status === "error").map((l) => l.error));
    expect(rerun).toHaveLength(5);
    expect(again.stdout).toMatch(/0 summarized, 3 skipped \(summary exists\), 2 failed/);
    expect(await Promise.all(expected.map(async (f) => (await stat(path.join(cwd, "out", f))).mtimeMs))).toEqual(mtimes);

    const forced = await kvzap(["summarize", "docs", "--out", "out", ...FAST, "--force"], { cwd });
    expect(forced.code).toBe(1);
    expect((await readReport(path.join(cwd, "out"))).map((l) => l.status).sort()).toEqual(["error", "error", "ok", "ok", "ok"]);
    expect(await summaries(path.join(cwd, "out"))).toEqual(before); // greedy: the same text again
    expect(await listFiles(path.join(cwd, "out"))).toEqual([...expected, "report.jsonl"].sort());
  });

  it("chunks an input longer than the context and combines the chunk summaries", async () => {
    const cwd = path.join(work, "long");
    await mkdir(cwd, { recursive: true });
    const text = stories.slice(0, 12_000);
    await writeFile(path.join(cwd, "long.txt"), text);
    const r = await kvzap(["summarize", "long.txt", "-o", "out", ...FAST], { cwd });
    expect(r.code).toBe(0);
    const [line] = await readReport(path.join(cwd, "out"));
    expect(line).toMatchObject({ path: "long.txt", status: "ok", output: "long.txt.summary.md" });
    expect(line.chunks).toBeGreaterThan(5);
    // The part count and an estimate up front, then a line per part (stderr is no terminal here).
    expect(r.stderr).toMatch(new RegExp(`long\\.txt: longer than the context, ${line.chunks} parts, about \\d+ model calls`));
    for (let i = 1; i <= line.chunks; i++) expect(r.stderr).toMatch(new RegExp(`long\\.txt: part ${i} of ${line.chunks} done in [\\d.]+s \\(${i}/\\d+ calls`));
    expect(r.stderr).toMatch(/part 2 of \d+ done in .*, about \d.* left\)/);
    // Done: no part cache is left behind.
    expect(await listFiles(path.join(cwd, "out"))).toEqual(["long.txt.summary.md", "report.jsonl"]);
    // Every chunk was read: more prompt tokens than the whole text has, in calls of at most 512 tokens.
    expect(line.tokensIn).toBeGreaterThan(text.length / 3);
    expect(line.tokensOut).toBeGreaterThan(0);
    expect(r.stderr).toMatch(new RegExp(`long\\.txt -> out/long\\.txt\\.summary\\.md \\(.*${line.chunks} chunks\\)`));
  });

  it("names summaries after the path below the current folder: same-named files do not collide, DIR is never an input", async () => {
    const cwd = path.join(work, "names");
    await mkdir(path.join(cwd, "a"), { recursive: true });
    await mkdir(path.join(cwd, "b"), { recursive: true });
    await writeFile(path.join(cwd, "a", "notes.md"), story(10));
    await writeFile(path.join(cwd, "b", "notes.md"), story(11));
    const r = await kvzap(["summarize", "a/*.md", "b", "--out", "sums", ...FAST], { cwd });
    expect(r.code).toBe(0);
    expect(await listFiles(path.join(cwd, "sums"))).toEqual(["a/notes.md.summary.md", "b/notes.md.summary.md", "report.jsonl"]);
    // "." holds sums/ and its Markdown summaries; they are not taken for documents.
    const again = await kvzap(["summarize", ".", "--out", "sums", ...FAST, "--json"], { cwd });
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ total: 2, skipped: 2 });
  });

  it("after kill -9 in the middle, a rerun ends with the same summaries as an uninterrupted run and no temp file", async () => {
    const folder = await storyFolder("many", 10);
    const reference = path.join(work, "many-ref");
    const interrupted = path.join(work, "many-killed");
    const ref = await kvzap(["summarize", folder, "--out", reference, ...FAST], { cwd: work });
    expect(ref.code).toBe(0);
    const expected = await summaries(reference);
    expect(expected.size).toBe(10);

    const run = spawnCli(["summarize", folder, "--out", interrupted, ...FAST], work);
    await waitForSummary(interrupted, run.done);
    run.child.kill("SIGKILL");
    const killed = await run.done;
    expect(killed.signal).toBe("SIGKILL");
    const survivors = await summaries(interrupted);
    expect(survivors.size).toBeGreaterThan(0);
    expect(survivors.size).toBeLessThan(10); // it really was stopped in the middle
    for (const [f, text] of survivors) expect(text).toBe(expected.get(f)); // whole summaries only
    // The report kept the lines written before the kill, each whole.
    const partial = await readReport(interrupted);
    expect(partial.every((l) => l.status === "ok" && survivors.has(l.output!))).toBe(true);

    const rerun = await kvzap(["summarize", folder, "--out", interrupted, ...FAST], { cwd: work });
    expect(rerun.code).toBe(0);
    expect(await summaries(interrupted)).toEqual(expected);
    expect(await listFiles(interrupted)).toEqual([...expected.keys(), "report.jsonl"].sort());
    const report = await readReport(interrupted);
    expect(report).toHaveLength(10);
    // Merged: the lines written before the kill stay as they were, the rest come from the rerun. (A summary whose
    // line the kill cut off is a skip with a line of its own.)
    for (const l of partial) expect(report).toContainEqual(l);
    expect(report.every((l) => l.status === "ok" || l.status === "skipped")).toBe(true);
    expect(report.filter((l) => l.status === "ok").length).toBe(10 - survivors.size + partial.length);
  });

  it("Ctrl-C stops after the input in progress is dropped, keeps finished work, and exits 130", async () => {
    const folder = await storyFolder("interrupt", 8);
    const out = path.join(work, "interrupt-out");
    const run = spawnCli(["summarize", folder, "--out", out, ...FAST], work);
    await waitForSummary(out, run.done);
    run.child.kill("SIGINT");
    const r = await run.done;
    expect(r.code).toBe(130);
    expect(r.stdout).toMatch(/^stopped after \d+ of 8 inputs/);
    const done = await summaries(out);
    const report = await readReport(out);
    expect(report.length).toBeLessThan(8);
    expect(report.every((l) => l.status === "ok")).toBe(true);
    expect([...done.keys()].sort()).toEqual(report.map((l) => l.output).sort());
    expect(await listFiles(out)).toEqual([...done.keys(), "report.jsonl"].sort());
  });

  it("takes the prompt from --prompt-template and refuses one without {{document}}", async () => {
    const cwd = path.join(work, "template");
    await mkdir(cwd, { recursive: true });
    await writeFile(path.join(cwd, "tale.md"), story(20));
    await writeFile(path.join(cwd, "good.txt"), "Here is a story called {{name}}:\n\n{{document}}\n\nIn short,");
    await writeFile(path.join(cwd, "bad.txt"), "Summarize {{name}} please.");
    const good = await kvzap(["summarize", "tale.md", "-o", "out", "--prompt-template", "good.txt", ...FAST, "--json"], { cwd });
    expect(good.code).toBe(0);
    const [line] = JSON.parse(good.stdout).results as Line[];
    expect(line).toMatchObject({ status: "ok", output: "tale.md.summary.md", chunks: 1 });
    const bad = await kvzap(["summarize", "tale.md", "-o", "out2", "--prompt-template", "bad.txt", ...FAST], { cwd });
    expectCleanFailure(bad);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/bad\.txt: the prompt template has no \{\{document\}\} placeholder/);
    // Twice: refused up front with one message, instead of every input failing with "shorten the input".
    await writeFile(path.join(cwd, "twice.txt"), "{{document}}\n\nOnce more:\n{{document}}");
    const twice = await kvzap(["summarize", "tale.md", "-o", "out3", "--prompt-template", "twice.txt", ...FAST], { cwd });
    expectCleanFailure(twice);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(/twice\.txt: the prompt template has \{\{document\}\} 2 times; use it once/);
  });

  it("refuses a second run on the same --out while the first runs (exit 2, naming its pid); the first finishes whole", async () => {
    const folder = await storyFolder("locked", 3);
    // A long input keeps the first run busy for seconds.
    await writeFile(path.join(folder, "zz-long.txt"), stories.slice(0, 15_000));
    const out = path.join(work, "locked-out");
    const first = spawnCli(["summarize", folder, "--out", out, ...FAST], work);
    const parts = path.join(out, ".kvzap-parts", "locked", "zz-long.txt.summary.md.parts.jsonl");
    while ((await readFile(parts, "utf8").catch(() => "")) === "") await new Promise((r) => setTimeout(r, 10));
    const second = await kvzap(["summarize", folder, "--out", out, ...FAST], { cwd: work });
    expectCleanFailure(second);
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(new RegExp(`the output folder .*locked-out is in use by another kvzap summarize \\(pid ${first.child.pid}`));
    const r = await first.done;
    expect(r.code).toBe(0);
    const report = await readReport(out);
    expect(report.map((l) => l.status)).toEqual(Array(4).fill("ok"));
    expect(await listFiles(out)).toEqual([...(await summaries(out)).keys(), "report.jsonl"].sort());
  });

  it("a rerun stopped at once never shortens report.jsonl: finished lines stay", async () => {
    const folder = await storyFolder("keep-report", 3);
    // A long first input keeps the rerun busy for a while before it finishes anything.
    await writeFile(path.join(folder, "aa-long.txt"), stories.slice(0, 15_000));
    const out = path.join(work, "keep-report-out");
    expect((await kvzap(["summarize", folder, "--out", out, ...FAST], { cwd: work })).code).toBe(0);
    const before = await readReport(out);
    expect(before).toHaveLength(4);
    const run = spawnCli(["summarize", folder, "--out", out, ...FAST, "--force"], work);
    let stderr = "";
    run.child.stderr!.on("data", (d) => (stderr += d));
    while (!/loading/.test(stderr)) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 400));
    run.child.kill("SIGINT");
    await run.done;
    const after = await readReport(out);
    expect(after).toHaveLength(4);
    expect(after.map((l) => l.path).sort()).toEqual(before.map((l) => l.path).sort());
    expect(after.every((l) => l.status === "ok")).toBe(true);
  });

  it("keeps output names when an argument is added, reports a summary made with other settings, and --force redoes it", async () => {
    const cwd = path.join(work, "settings");
    await mkdir(path.join(cwd, "docs"), { recursive: true });
    await writeFile(path.join(cwd, "docs", "a.txt"), story(30));
    await writeFile(path.join(cwd, "b.txt"), story(31));
    const first = await kvzap(["summarize", "docs", "--out", "out", ...FAST], { cwd });
    expect(first.code).toBe(0);
    const [made] = await readReport(path.join(cwd, "out"));
    expect(made).toMatchObject({ output: "docs/a.txt.summary.md", settings: { maxTokens: 24, temperature: 0, contextSize: 512 } });
    expect(made.settings!.model).toBe(models.stories);

    // One more argument: the existing summary keeps its name and is skipped, the new input is summarized.
    const more = await kvzap(["summarize", "docs", "b.txt", "--out", "out", ...FAST, "--json"], { cwd });
    expect(more.code).toBe(0);
    expect(JSON.parse(more.stdout)).toMatchObject({ ok: 1, skipped: 1 });
    expect((await listFiles(path.join(cwd, "out"))).sort()).toEqual(["b.txt.summary.md", "docs/a.txt.summary.md", "report.jsonl"]);

    const other = ["--model", models.stories, "--max-tokens", "20", "--temp", "0", "--ctx", "512"];
    const changed = await kvzap(["summarize", "docs", "b.txt", "--out", "out", ...other], { cwd });
    expect(changed.code).toBe(0);
    expect(changed.stderr).toMatch(/skipped docs\/a\.txt \(summary exists, made with other settings: maxTokens 24 → 20; --force redoes it\)/);
    expect(changed.stdout).toMatch(/0 summarized, 2 skipped \(summary exists; 2 made with other settings, --force redoes them\)/);

    const forced = await kvzap(["summarize", "docs", "b.txt", "--out", "out", ...other, "--force", "--json"], { cwd });
    expect(JSON.parse(forced.stdout)).toMatchObject({ ok: 2, skipped: 0 });
    const report = await readReport(path.join(cwd, "out"));
    expect(report.map((l) => l.settings?.maxTokens)).toEqual([20, 20]);
    const same = await kvzap(["summarize", "docs", "b.txt", "--out", "out", ...other], { cwd });
    expect(same.stderr).not.toMatch(/other settings/);
  });

  it("resumes inside a long input: part summaries of a stopped run are kept and the result is the same", async () => {
    const cwd = path.join(work, "long-resume");
    await mkdir(cwd, { recursive: true });
    await writeFile(path.join(cwd, "long.txt"), stories.slice(0, 12_000));
    const reference = await kvzap(["summarize", "long.txt", "-o", "ref", ...FAST], { cwd });
    expect(reference.code).toBe(0);
    const expected = await readFile(path.join(cwd, "ref", "long.txt.summary.md"), "utf8");

    const run = spawnCli(["summarize", "long.txt", "-o", "out", ...FAST], cwd);
    const parts = path.join(cwd, "out", ".kvzap-parts", "long.txt.summary.md.parts.jsonl");
    for (;;) {
      const text = await readFile(parts, "utf8").catch(() => "");
      if (text.split("\n").filter(Boolean).length >= 3) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    run.child.kill("SIGKILL");
    await run.done;
    const rerun = await kvzap(["summarize", "long.txt", "-o", "out", ...FAST], { cwd });
    expect(rerun.code).toBe(0);
    const kept = Number(/(\d+) kept from an earlier run/.exec(rerun.stderr)?.[1]);
    expect(kept).toBeGreaterThanOrEqual(3);
    expect(rerun.stderr.match(/: part \d+ of \d+ kept from an earlier run/g)?.length).toBeGreaterThanOrEqual(3);
    expect(await readFile(path.join(cwd, "out", "long.txt.summary.md"), "utf8")).toBe(expected);
    const [line] = await readReport(path.join(cwd, "out"));
    const [full] = await readReport(path.join(cwd, "ref"));
    expect(line.tokensIn).toBeLessThan(full.tokensIn); // the kept parts were not evaluated again
  });

  it("reports dangling links and link loops of a folder as failed inputs", async () => {
    const cwd = path.join(work, "links");
    await mkdir(path.join(cwd, "docs", "sub"), { recursive: true });
    await writeFile(path.join(cwd, "docs", "ok.txt"), story(40));
    await symlink("missing.txt", path.join(cwd, "docs", "dead.txt"));
    await symlink("..", path.join(cwd, "docs", "sub", "loop"));
    const r = await kvzap(["summarize", "docs", "--out", "out", ...FAST, "--json"], { cwd });
    expectCleanFailure(r);
    expect(r.code).toBe(1);
    const report = await readReport(path.join(cwd, "out"));
    expect(report.map((l) => [l.path, l.status])).toEqual([
      ["docs/dead.txt", "error"],
      ["docs/sub/loop", "error"],
      ["docs/ok.txt", "ok"],
    ]);
    expect(report[0].error).toMatch(/docs\/dead\.txt: a dangling symbolic link/);
    expect(report[1].error).toMatch(/docs\/sub\/loop: a symbolic link loop/);
  });

  it("checks the model before the first input: a bad model fails the run before any input is read", async () => {
    const cwd = path.join(work, "bad-model");
    await mkdir(cwd, { recursive: true });
    await writeFile(path.join(cwd, "broken.pdf"), "%PDF-1.4 nothing more");
    await writeFile(path.join(cwd, "a.txt"), story(41));
    await writeFile(path.join(cwd, "model.gguf"), "<html>not a model</html>");
    const r = await kvzap(["summarize", "broken.pdf", "a.txt", "--out", "out", "--model", "model.gguf"], { cwd });
    expectCleanFailure(r);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not a GGUF model file: .*model\.gguf/);
    expect(r.stderr).not.toMatch(/\[1\/2\]/); // no input was tried
    expect(await readFile(path.join(cwd, "out", "report.jsonl"), "utf8").catch(() => "")).toBe("");
  });

  it("exits 2 for usage errors", async () => {
    const cwd = path.join(work, "usage");
    await mkdir(cwd, { recursive: true });
    await writeFile(path.join(cwd, "a.txt"), "text");
    const cases: [string[], RegExp][] = [
      [["summarize", "--out", "out", ...FAST], /no PATHS given/],
      [["summarize", "a.txt", ...FAST], /--out DIR is required/],
      [["summarize", "a.txt", "--out", "out", "--frobnicate", ...FAST], /unknown option --frobnicate/],
      [["summarize", "a.txt", "--out", "out", "--max-tokens", "lots"], /--max-tokens/],
    ];
    for (const [args, message] of cases) {
      const r = await kvzap(args, { cwd });
      expectCleanFailure(r);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    expect((await readdir(cwd)).sort()).toEqual(["a.txt"]);
  });
});
