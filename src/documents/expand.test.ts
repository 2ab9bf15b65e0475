import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DocumentError, expandInputs, loadDocument } from "./index.js";

let root: string;
/** The tree spelled relative to the working directory, as a user would type it (no chdir: workers may share a process). */
let P: string;
const at = (rel: string) => `${P}/${rel}`;
const abs = (rel: string) => join(root, rel);

/** A small real tree: documents at several depths, hidden files and folders, other file types, links. */
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "kvzap-expand-"));
  P = relative(process.cwd(), root);
  const files: Record<string, string> = {
    "docs/b.txt": "b",
    "docs/a.md": "a",
    "docs/Z.markdown": "z",
    "docs/image.png": "not a document",
    "docs/.secret.txt": "hidden",
    "docs/.hidden/inside.txt": "hidden folder",
    "docs/sub/c.pdf": "%PDF-1.4",
    "docs/sub/deeper/d.TXT": "d",
    "docs/sub/notes.log": "log line",
    "docs/a.txt": "a",
    "empty-folder/readme.png": "x",
    "top.txt": "top",
    "other/e.md": "e",
    "other/f.pdf": "%PDF-1.4",
  };
  for (const [rel, content] of Object.entries(files)) {
    await mkdir(join(root, rel, ".."), { recursive: true });
    await writeFile(join(root, rel), content);
  }
  await symlink(abs("docs/sub"), abs("docs/sub/deeper/up")); // a cycle
  await symlink(abs("top.txt"), abs("alias.txt")); // the same file under another name
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function notFound(paths: string[]): Promise<DocumentError> {
  try {
    await expandInputs(paths);
  } catch (e) {
    expect(e).toBeInstanceOf(DocumentError);
    expect((e as DocumentError).code).toBe("not_found");
    return e as DocumentError;
  }
  throw new Error("expected not_found");
}

const ALL_DOCS = ["docs/Z.markdown", "docs/a.md", "docs/a.txt", "docs/b.txt", "docs/sub/c.pdf", "docs/sub/deeper/d.TXT"];

describe("expandInputs", () => {
  it("takes files as given, whatever their extension", async () => {
    const given = [at("top.txt"), at("docs/image.png"), at("docs/.secret.txt")];
    expect(await expandInputs(given)).toEqual(given);
  });

  it("walks folders recursively: sorted, documents only, hidden entries skipped, link cycles read once", async () => {
    expect(await expandInputs([at("docs")])).toEqual(ALL_DOCS.map(at));
    expect(await expandInputs([at("docs/")])).toEqual(ALL_DOCS.map(at));
    expect(await expandInputs([abs("other")])).toEqual([abs("other/e.md"), abs("other/f.pdf")]);
  });

  it("honours a custom extension list, with or without dots", async () => {
    expect(await expandInputs([at("docs")], { extensions: ["pdf", ".LOG"] })).toEqual([at("docs/sub/c.pdf"), at("docs/sub/notes.log")]);
  });

  it("expands *, ? and ** patterns", async () => {
    expect(await expandInputs([at("docs/*.txt")])).toEqual([at("docs/a.txt"), at("docs/b.txt")]);
    expect(await expandInputs([at("docs/?.md")])).toEqual([at("docs/a.md")]);
    expect(await expandInputs([at("docs/**/*.txt")])).toEqual([at("docs/a.txt"), at("docs/b.txt")]);
    expect(await expandInputs([at("**/*.pdf")])).toEqual([at("docs/sub/c.pdf"), at("other/f.pdf")]);
    expect(await expandInputs([at("docs/**/*.TXT")])).toEqual([at("docs/sub/deeper/d.TXT")]);
    // A pattern that names an extension literally gets those files even when it is not a document extension.
    expect(await expandInputs([at("docs/**/*.log")])).toEqual([at("docs/sub/notes.log")]);
    // Matched folders contribute their documents; other matched files are filtered to documents.
    expect(await expandInputs([at("docs/s*")])).toEqual([at("docs/sub/c.pdf"), at("docs/sub/deeper/d.TXT")]);
    expect(await expandInputs([at("docs/*")])).toEqual(ALL_DOCS.map(at));
    expect(await expandInputs([`${root}/other/*`])).toEqual([abs("other/e.md"), abs("other/f.pdf")]);
  });

  it("keeps hidden names out of wildcards unless the pattern asks for a dot", async () => {
    expect(await expandInputs([at("docs/*.txt")])).not.toContain(at("docs/.secret.txt"));
    expect(await expandInputs([at("docs/.*.txt")])).toEqual([at("docs/.secret.txt")]);
  });

  it("lists a file reached through a link only once", async () => {
    expect(await expandInputs([at("top.txt"), at("alias.txt")])).toEqual([at("top.txt")]);
    expect(await expandInputs([at("alias.txt"), at("top.txt")])).toEqual([at("alias.txt")]);
  });

  it("de-duplicates across arguments and spellings, keeping the first occurrence", async () => {
    const inputs = [at("docs/b.txt"), at("docs/*.txt"), `${P}/./docs/a.txt`, at("docs"), abs("top.txt"), at("top.txt")];
    expect(await expandInputs(inputs)).toEqual([
      at("docs/b.txt"),
      at("docs/a.txt"),
      at("docs/Z.markdown"),
      at("docs/a.md"),
      at("docs/sub/c.pdf"),
      at("docs/sub/deeper/d.TXT"),
      abs("top.txt"),
    ]);
  });

  it("reports a path that matches nothing", async () => {
    const missing = await notFound([at("top.txt"), at("missing.pdf")]);
    expect(missing.path).toBe(at("missing.pdf"));
    expect(missing.message).toBe(`${at("missing.pdf")}: no such file or folder`);

    const pattern = await notFound([at("docs/*.docx")]);
    expect(pattern.message).toBe(`${at("docs/*.docx")}: no file matches this pattern (looking for .pdf, .txt, .md, .markdown)`);
    expect((await notFound([at("nowhere/**/*.pdf")])).path).toBe(at("nowhere/**/*.pdf"));

    const empty = await notFound([at("empty-folder")]);
    expect(empty.message).toBe(`${at("empty-folder")}: the folder has no documents (looking for .pdf, .txt, .md, .markdown)`);
  });

  it("feeds loadDocument: every expanded text document loads", async () => {
    const paths = await expandInputs([at("docs/**/*.md"), at("other/*.md")]);
    expect(paths).toEqual([at("docs/a.md"), at("other/e.md")]);
    const docs = await Promise.all(paths.map((p) => loadDocument(p)));
    expect(docs.map((d) => [d.name, d.kind, d.text])).toEqual([
      ["a.md", "markdown", "a"],
      ["e.md", "markdown", "e"],
    ]);
  });
});
