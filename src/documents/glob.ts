/**
 * Minimal glob patterns for command-line paths (Node 20 has no fs.promises.glob): `*` and `?` match within one path
 * segment, `**` as a whole segment matches any number of folders. As in shells, wildcards do not match names that
 * start with a dot unless the pattern segment itself starts with one.
 */

export function hasGlobMagic(s: string): boolean {
  return /[*?]/.test(s);
}

/** Splits a pattern into its literal leading folder and the segments that need matching. */
export function splitPattern(pattern: string): { base: string; segments: string[] } {
  const absolute = pattern.startsWith("/");
  const parts = pattern.split("/").filter((p) => p.length > 0 && p !== ".");
  const firstMagic = parts.findIndex(hasGlobMagic);
  const literal = firstMagic === -1 ? parts : parts.slice(0, firstMagic);
  const base = (absolute ? "/" : "") + literal.join("/");
  return { base: base || ".", segments: firstMagic === -1 ? [] : parts.slice(firstMagic) };
}

const segmentCache = new Map<string, RegExp>();

/** Whether one path segment (a file or folder name) matches one pattern segment. */
export function matchSegment(pattern: string, name: string): boolean {
  if (pattern === "**") return !name.startsWith(".");
  if (name.startsWith(".") && !pattern.startsWith(".")) return false;
  let re = segmentCache.get(pattern);
  if (!re) {
    let src = "^";
    for (const ch of pattern) {
      if (ch === "*") src += "[^/]*";
      else if (ch === "?") src += "[^/]";
      else src += ch.replace(/[\\^$.|+()[\]{}]/g, "\\$&");
    }
    re = new RegExp(src + "$", "u");
    segmentCache.set(pattern, re);
  }
  return re.test(name);
}

/** Whether a relative path (segments) matches a pattern (segments), `**` included. */
export function matchPath(pattern: readonly string[], path: readonly string[]): boolean {
  return matchSegments(pattern, path, false);
}

/** Whether some path below folder `path` could still match: prunes a walk to the folders the pattern can reach. */
export function couldMatchBelow(pattern: readonly string[], path: readonly string[]): boolean {
  return matchSegments(pattern, path, true);
}

// Can pattern[p..] consume path[s..]: exactly (whole), or all of path with pattern segments left over (below)?
function matchSegments(pattern: readonly string[], path: readonly string[], below: boolean): boolean {
  const memo = new Map<string, boolean>();
  const go = (p: number, s: number): boolean => {
    const key = `${p},${s}`;
    const known = memo.get(key);
    if (known !== undefined) return known;
    let result: boolean;
    if (below && s === path.length) result = p < pattern.length;
    else if (p === pattern.length) result = !below && s === path.length;
    else if (pattern[p] === "**") {
      result = go(p + 1, s) || (s < path.length && matchSegment("**", path[s]) && go(p, s + 1));
    } else {
      result = s < path.length && matchSegment(pattern[p], path[s]) && go(p + 1, s + 1);
    }
    memo.set(key, result);
    return result;
  };
  return go(0, 0);
}
