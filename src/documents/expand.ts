import { lstat, readdir, readlink, realpath, stat } from "node:fs/promises";
import { extname, join, relative, resolve } from "node:path";
import { DocumentError, fsError } from "./errors.js";
import { couldMatchBelow, hasGlobMagic, matchPath, splitPattern } from "./glob.js";
import { SUPPORTED_EXTENSIONS } from "./load.js";

export interface ExpandOptions {
  /** Extensions that folders and globs pick up, with or without the dot; default .pdf .txt .md .markdown. */
  extensions?: readonly string[];
  /** Told about each entry of a folder that is skipped for a reason a person should hear of (a dangling link, a
   * link that loops back to a folder above it), with the entry's path and the reason. */
  onSkipped?: (path: string, reason: string) => void;
}

/**
 * Turns command-line paths into the list of documents to read: a file is taken as given (whatever its extension), a
 * folder contributes its documents recursively (sorted, supported extensions only, hidden files and folders
 * skipped), and a pattern with `*`, `?` or `**` contributes what it matches. The result keeps the order of the
 * arguments, lists each file once (also when reached through a link), and spells paths the way the user did. An
 * argument that yields nothing is a DocumentError "not_found".
 */
export async function expandInputs(paths: readonly string[], opts: ExpandOptions = {}): Promise<string[]> {
  const extensions = new Set((opts.extensions ?? SUPPORTED_EXTENSIONS).map((e) => (e.startsWith(".") ? e : `.${e}`).toLowerCase()));
  const out: string[] = [];
  const seen = new Set<string>();
  const add = async (p: string) => {
    const key = await realpath(p).catch(() => resolve(p));
    if (!seen.has(key)) {
      seen.add(key);
      out.push(p);
    }
  };

  for (const input of paths) {
    const found = await expandOne(input, extensions, opts.onSkipped);
    if (found.length === 0) {
      const list = [...extensions].join(", ");
      if (hasGlobMagic(input) && !(await exists(input))) {
        throw new DocumentError(input, "not_found", `no file matches this pattern (looking for ${list})`);
      }
      throw new DocumentError(input, "not_found", `the folder has no documents (looking for ${list})`);
    }
    for (const p of found) await add(p);
  }
  return out;
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

type OnSkipped = ExpandOptions["onSkipped"];

async function expandOne(input: string, extensions: ReadonlySet<string>, onSkipped: OnSkipped): Promise<string[]> {
  try {
    const st = await stat(input);
    if (st.isDirectory()) return await walkFolder(input, extensions, onSkipped);
    return [input];
  } catch (e) {
    if (e instanceof DocumentError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if ((code === "ENOENT" || code === "ENOTDIR") && hasGlobMagic(input)) return await expandGlob(input, extensions, onSkipped);
    throw fsError(input, e);
  }
}

/** Orders paths folder by folder, name by name (code-point order, so it does not depend on the locale). */
function comparePaths(a: string, b: string): number {
  const as = a.split("/");
  const bs = b.split("/");
  for (let i = 0; i < Math.min(as.length, bs.length); i++) {
    if (as[i] !== bs[i]) return as[i] < bs[i] ? -1 : 1;
  }
  return as.length - bs.length;
}

function hasExtension(name: string, extensions: ReadonlySet<string>): boolean {
  return extensions.has(extname(name).toLowerCase());
}

/**
 * All documents under a folder; symbolic links are followed, but a folder reached twice is read once. A dangling link
 * and a link back to a folder above it are told to `onSkipped` (a file deleted meanwhile is not).
 */
async function walkFolder(root: string, extensions: ReadonlySet<string>, onSkipped: OnSkipped): Promise<string[]> {
  const found: string[] = [];
  const visited = new Set<string>();
  const visit = async (dir: string, ancestors: readonly string[]): Promise<void> => {
    let real: string;
    let entries: string[];
    try {
      real = await realpath(dir);
      if (ancestors.includes(real)) {
        onSkipped?.(dir, `a symbolic link loop (it leads back to ${ancestorName(root, ancestors, real)}); not followed`);
        return;
      }
      if (visited.has(real)) return;
      visited.add(real);
      entries = await readdir(dir);
    } catch (e) {
      throw fsError(dir, e);
    }
    for (const name of entries) {
      if (name.startsWith(".")) continue;
      const p = join(dir, name);
      let st;
      try {
        st = await stat(p);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const link = await lstat(p).then(
          (l) => l.isSymbolicLink(),
          () => false,
        );
        if (link && code === "ELOOP") onSkipped?.(p, "a symbolic link loop (the link leads back to itself); not followed");
        else if (link && (code === "ENOENT" || code === "ENOTDIR"))
          onSkipped?.(p, `a dangling symbolic link (its target ${await readlink(p).catch(() => "?")} does not exist)`);
        continue; // a file deleted meanwhile is simply not a document
      }
      if (st.isDirectory()) await visit(p, [...ancestors, real]);
      else if (st.isFile() && hasExtension(name, extensions)) found.push(p);
    }
  };
  await visit(root, []);
  return found.sort(comparePaths);
}

/**
 * Files matched by a pattern, plus the documents of matched folders. A matched file counts when its extension is a
 * supported one, or when the pattern names that extension literally (`logs/*.log`).
 */
async function expandGlob(pattern: string, extensions: ReadonlySet<string>, onSkipped: OnSkipped): Promise<string[]> {
  const { base, segments } = splitPattern(pattern);
  const last = segments[segments.length - 1] ?? "";
  const literalExt = /\.[A-Za-z0-9]+$/.exec(last)?.[0].toLowerCase();
  const wanted = (name: string) => hasExtension(name, extensions) || (literalExt !== undefined && extname(name).toLowerCase() === literalExt);

  const matches: string[] = [];
  const walk = async (dir: string, rel: string[]): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return; // the literal base does not exist, or a folder vanished: no matches there
    }
    for (const entry of entries) {
      const relPath = [...rel, entry.name];
      const p = join(dir, entry.name);
      // `**` only descends into real folders, never through links, so a link cycle cannot trap it.
      if (entry.isDirectory() && couldMatchBelow(segments, relPath)) await walk(p, relPath);
      if (matchPath(segments, relPath)) matches.push(p);
    }
  };
  await walk(base, []);

  const found: string[] = [];
  for (const p of matches.sort(comparePaths)) {
    let st;
    try {
      st = await stat(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) found.push(...(await walkFolder(p, extensions, onSkipped)));
    else if (st.isFile() && wanted(p)) found.push(p);
  }
  return found;
}

/** The folder a looping link leads back to, as a path the user recognises (relative to the walk's root). */
function ancestorName(root: string, ancestors: readonly string[], real: string): string {
  const rootReal = ancestors[0] ?? real;
  const rel = relative(rootReal, real);
  return rel === "" ? root : join(root, rel);
}
