import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error: plain ESM build script without type declarations
import { PatchError, listPatches, locateBundle, prepareLlamaSource } from "./llama-source.mjs";

const repoRoot = path.resolve(import.meta.dirname, "..", "..");

function git(cwd: string, ...args: string[]) {
  return execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...args], { cwd, encoding: "utf8" });
}

describe("llama.cpp source preparation", () => {
  let dir: string;
  let bundle: string;
  let patches: string;

  beforeAll(() => {
    // A small upstream repository in a git bundle, shaped like the one node-llama-cpp ships.
    dir = mkdtempSync(path.join(os.tmpdir(), "kvzap-src-"));
    const up = path.join(dir, "upstream");
    mkdirSync(up);
    git(up, "init", "-q");
    writeFileSync(path.join(up, "llama.c"), "int answer(void) {\n    return 41;\n}\n");
    writeFileSync(path.join(up, "ggml.c"), "int width(void) {\n    return 8;\n}\n");
    git(up, "add", ".");
    git(up, "commit", "-qm", "upstream");
    bundle = path.join(dir, "src.bundle");
    git(up, "bundle", "create", "-q", bundle, "HEAD");
    patches = path.join(dir, "patches");
    mkdirSync(patches);
    writeFileSync(path.join(up, "llama.c"), "int answer(void) {\n    return 42;\n}\n");
    writeFileSync(path.join(patches, "0001-answer.patch"), git(up, "diff"));
    git(up, "checkout", "-q", ".");
    writeFileSync(path.join(up, "ggml.c"), "int width(void) {\n    return 16;\n}\n");
    writeFileSync(path.join(patches, "0002-width.patch"), git(up, "diff"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("clones the bundle and applies the patches in file-name order", () => {
    const dest = path.join(dir, "tree");
    const r = prepareLlamaSource({ bundle, tag: "v0", dest, patches: listPatches(patches) });
    expect(r.changed).toBe(true);
    expect(readFileSync(path.join(dest, "llama.c"), "utf8")).toContain("return 42;");
    expect(readFileSync(path.join(dest, "ggml.c"), "utf8")).toContain("return 16;");
    // Unchanged inputs: nothing is redone, so an incremental build sees no new timestamps.
    expect(prepareLlamaSource({ bundle, tag: "v0", dest, patches: listPatches(patches) }).changed).toBe(false);
  });

  it("re-applies from a clean tree when a patch changes", () => {
    const dest = path.join(dir, "tree2");
    prepareLlamaSource({ bundle, tag: "v0", dest, patches: listPatches(patches) });
    const only = path.join(dir, "only-first");
    mkdirSync(only);
    writeFileSync(path.join(only, "0001-answer.patch"), readFileSync(path.join(patches, "0001-answer.patch")));
    expect(prepareLlamaSource({ bundle, tag: "v0", dest, patches: listPatches(only) }).changed).toBe(true);
    expect(readFileSync(path.join(dest, "ggml.c"), "utf8")).toContain("return 8;");
    expect(readFileSync(path.join(dest, "llama.c"), "utf8")).toContain("return 42;");
  });

  it("stops with a message naming a patch that does not apply", () => {
    const bad = path.join(dir, "bad");
    mkdirSync(bad);
    writeFileSync(path.join(bad, "0001-answer.patch"), readFileSync(path.join(patches, "0001-answer.patch")));
    writeFileSync(
      path.join(bad, "0002-stale.patch"),
      readFileSync(path.join(patches, "0001-answer.patch"), "utf8").replace("-    return 41;", "-    return 40;"),
    );
    const dest = path.join(dir, "tree3");
    let err: unknown;
    try {
      prepareLlamaSource({ bundle, tag: "v0", dest, patches: listPatches(bad) });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PatchError);
    expect((err as Error).message).toMatch(/^patch 0002-stale\.patch does not apply to llama\.cpp v0/);
    expect(existsSync(path.join(dest, ".kvzap-stamp"))).toBe(false);
  });

  it("checks out the new tag when the bundle changes (a new node-llama-cpp), then applies the patches to it", () => {
    // The upstream moves on: v1 adds a file and changes one the patches do not touch.
    const up = path.join(dir, "upstream");
    git(up, "checkout", "-q", ".");
    git(up, "tag", "v0");
    writeFileSync(path.join(up, "vocab.c"), "int vocab(void) {\n    return 32000;\n}\n");
    git(up, "add", ".");
    git(up, "commit", "-qm", "upstream v1");
    git(up, "tag", "v1");
    const v1 = git(up, "rev-parse", "HEAD").trim();
    const newer = path.join(dir, "src-v1.bundle");
    git(up, "bundle", "create", "-q", newer, "--all");

    const dest = path.join(dir, "tree4");
    prepareLlamaSource({ bundle, tag: "v0", dest, patches: listPatches(patches) });
    expect(existsSync(path.join(dest, "vocab.c"))).toBe(false);
    const r = prepareLlamaSource({ bundle: newer, tag: "v1", dest, patches: listPatches(patches) });
    expect(r.changed).toBe(true);
    expect(git(dest, "rev-parse", "HEAD").trim()).toBe(v1);
    expect(readFileSync(path.join(dest, "vocab.c"), "utf8")).toContain("return 32000;");
    expect(readFileSync(path.join(dest, "llama.c"), "utf8")).toContain("return 42;");
    expect(readFileSync(path.join(dest, "ggml.c"), "utf8")).toContain("return 16;");
    // A bundle with several tags: the named one is built, not the newest.
    prepareLlamaSource({ bundle: newer, tag: "v0", dest, patches: listPatches(patches) });
    expect(existsSync(path.join(dest, "vocab.c"))).toBe(false);
    expect(readFileSync(path.join(dest, "llama.c"), "utf8")).toContain("return 42;");
  });

  it("builds from node-llama-cpp's bundled source at its pinned tag, with our patches", () => {
    const { bundle: real, tag } = locateBundle(repoRoot);
    expect(existsSync(real)).toBe(true);
    expect(tag).toMatch(/\S/);
    const tree = path.join(repoRoot, "native", "deps", "llama.cpp");
    expect(existsSync(path.join(tree, ".kvzap-stamp"))).toBe(true);
    const head = execFileSync("git", ["bundle", "list-heads", real], { encoding: "utf8" }).split(" ")[0];
    expect(git(tree, "rev-parse", "HEAD").trim()).toBe(head);
    // The tree differs from the bundle by exactly our patches.
    for (const p of listPatches(path.join(repoRoot, "native", "patches"))) {
      expect(() => git(tree, "apply", "--check", "--reverse", p)).not.toThrow();
    }
  });
});
