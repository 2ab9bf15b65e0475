import os from "node:os";
import path from "node:path";

/** True for a model given as hf:… or an http(s) URL rather than a local path. */
export function isRemoteModel(spec: string): boolean {
  return /^(hf:|huggingface:|https?:\/\/)/i.test(spec);
}

export function defaultCacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg && xdg.length > 0 ? xdg : path.join(os.homedir(), ".cache"), "kvzap");
}

/**
 * Turns a MODEL argument into a local GGUF path: local paths as they are (with ~ expanded), remote ones downloaded
 * into the cache with a progress line on stderr.
 */
export async function resolveModelArg(spec: string, cacheDir = defaultCacheDir()): Promise<string> {
  if (!isRemoteModel(spec)) return spec.startsWith("~/") ? path.join(os.homedir(), spec.slice(2)) : spec;
  const { resolveModel } = await import("../engine/resolve.js");
  const { ProgressLine } = await import("./progress.js");
  const bar = new ProgressLine(`downloading ${spec}`);
  try {
    return await resolveModel(spec, {
      cacheDir,
      onProgress: (p) => bar.update(p.downloadedBytes, p.totalBytes),
    });
  } finally {
    bar.done();
  }
}
