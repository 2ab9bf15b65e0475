// Prepares the llama.cpp source tree that the addon builds: a clone of the git bundle that the node-llama-cpp
// package ships (pinned by its llama.cpp.info.json), with native/patches/*.patch applied in order.
// The tree is re-made only when the bundle or a patch changes, so rebuilds stay incremental.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

export class PatchError extends Error {}

function git(args, cwd) {
  return execFileSync("git", args, { cwd, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" }).trim();
}

/** The folder of an installed package, found the way Node finds it: node_modules of fromDir or of a parent. */
export function packageDir(fromDir, name) {
  for (let dir = path.resolve(fromDir); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, "node_modules", name);
    if (existsSync(path.join(candidate, "package.json"))) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`package ${name} is not installed (run npm install)`);
  }
}

/** Where node-llama-cpp keeps the bundled llama.cpp source and the tag it was cut from. */
export function locateBundle(fromDir) {
  const llamaDir = path.join(packageDir(fromDir, "node-llama-cpp"), "llama");
  const bundle = path.join(llamaDir, "gitRelease.bundle");
  if (!existsSync(bundle)) throw new Error(`node-llama-cpp ships no llama.cpp source bundle at ${bundle}`);
  const info = JSON.parse(readFileSync(path.join(llamaDir, "llama.cpp.info.json"), "utf8"));
  return { bundle, tag: info.tag, repo: info.llamaCppGithubRepo };
}

export function listPatches(patchesDir) {
  if (!existsSync(patchesDir)) return [];
  return readdirSync(patchesDir)
    .filter((f) => f.endsWith(".patch"))
    .sort()
    .map((f) => path.join(patchesDir, f));
}

function stampOf(bundle, tag, patches) {
  const h = createHash("sha256");
  h.update(readFileSync(bundle));
  h.update(tag);
  for (const p of patches) {
    h.update(path.basename(p));
    h.update(readFileSync(p));
  }
  return h.digest("hex");
}

/**
 * The commit `dest` must be at: the bundle's `refs/tags/<tag>`, else (a bundle that carries no tags) its HEAD or its
 * only head. Returns the ref to fetch.
 */
export function bundleRef(bundle, tag) {
  const heads = git(["bundle", "list-heads", bundle], path.dirname(bundle))
    .split("\n")
    .filter(Boolean)
    .map((line) => line.split(" ")[1]);
  if (heads.includes(`refs/tags/${tag}`)) return `refs/tags/${tag}`;
  if (heads.includes("HEAD")) return "HEAD";
  if (heads.length === 1) return heads[0];
  throw new Error(`the llama.cpp bundle ${bundle} has no tag ${tag} and no single head to build`);
}

/**
 * Makes `dest` the source of `bundle` at `tag` (bundleRef) with `patches` applied in order. An existing tree is kept
 * (so the build's timestamps of untouched files stay) but always moved to the bundle's commit: when node-llama-cpp
 * ships a new llama.cpp, the new tag is checked out before any patch is applied. Throws PatchError naming the first
 * patch that does not apply.
 */
export function prepareLlamaSource({ bundle, tag, dest, patches, log = () => {} }) {
  const stampFile = path.join(dest, ".kvzap-stamp");
  const stamp = stampOf(bundle, tag, patches);
  if (existsSync(stampFile) && readFileSync(stampFile, "utf8") === stamp) {
    log(`llama.cpp source up to date (${dest})`);
    return { dest, changed: false };
  }
  if (existsSync(path.join(dest, ".git"))) {
    // Undo earlier patches first, so that checking out another commit meets no local change.
    git(["reset", "--quiet", "--hard"], dest);
    git(["clean", "-fdq"], dest);
  } else {
    rmSync(dest, { recursive: true, force: true });
    mkdirSync(dest, { recursive: true });
    git(["init", "--quiet"], dest);
  }
  const ref = bundleRef(bundle, tag);
  log(`checking out llama.cpp ${tag} (${ref}) from ${bundle}`);
  git(["fetch", "--quiet", "--no-tags", path.resolve(bundle), ref], dest);
  git(["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", "FETCH_HEAD"], dest);
  for (const patch of patches) {
    const name = path.basename(patch);
    try {
      git(["apply", "--check", "--whitespace=nowarn", patch], dest);
    } catch (e) {
      const detail = String(e.stderr || e.message)
        .trim()
        .split("\n")
        .slice(0, 6)
        .join("\n");
      throw new PatchError(`patch ${name} does not apply to llama.cpp ${tag}:\n${detail}`);
    }
    git(["apply", "--whitespace=nowarn", patch], dest);
    log(`applied ${name}`);
  }
  writeFileSync(stampFile, stamp);
  return { dest, changed: true };
}
