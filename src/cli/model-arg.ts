import { UserError } from "../base/errors.js";
import { isRemoteModelSpec, unsupportedScheme } from "../settings/schema.js";
import { resolveSetting } from "../settings/resolve.js";

/**
 * Turns a model spec into a local GGUF path: local paths as they are, remote ones (hf:…, http(s)) downloaded into the
 * cache folder of the settings, with a progress line on stderr.
 */
export async function resolveModelArg(spec: string, cacheDirFlag?: string): Promise<string> {
  const scheme = unsupportedScheme(spec);
  if (scheme) throw new UserError(scheme);
  if (!isRemoteModelSpec(spec)) return spec;
  const { resolveModel } = await import("../engine/resolve.js");
  const { ProgressLine } = await import("../base/progress.js");
  const bar = new ProgressLine(`downloading ${spec}`);
  try {
    return await resolveModel(spec, {
      cacheDir: resolveSetting("cacheDir", cacheDirFlag).value,
      onProgress: (p) => bar.update(p.downloadedBytes, p.totalBytes),
    });
  } finally {
    bar.done();
  }
}
