import { InterruptedError, UserError } from "../base/errors.js";
import { formatBytes } from "../base/format.js";
import { isRemoteModelSpec, unsupportedScheme } from "../settings/schema.js";
import { resolveSetting } from "../settings/resolve.js";

/**
 * Turns a model spec into a local GGUF path: local paths as they are, remote ones (hf:…, http(s)) downloaded into the
 * cache folder of the settings, with a progress line on stderr. Ctrl-C during a download stops it with a message that
 * a rerun resumes it (the bytes received stay in the cache's partial file).
 */
export async function resolveModelArg(spec: string, cacheDirFlag?: string): Promise<string> {
  const scheme = unsupportedScheme(spec);
  if (scheme) throw new UserError(scheme);
  if (!isRemoteModelSpec(spec)) return spec;
  const { resolveModel } = await import("../engine/resolve.js");
  const { ProgressLine } = await import("../base/progress.js");
  const bar = new ProgressLine(`downloading ${spec}`);
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error("stopped"));
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  let received = 0;
  let total = 0;
  try {
    return await resolveModel(spec, {
      cacheDir: resolveSetting("cacheDir", cacheDirFlag).value,
      signal: controller.signal,
      onProgress: (p) => {
        received = p.downloadedBytes;
        total = p.totalBytes;
        bar.update(p.downloadedBytes, p.totalBytes);
      },
      onNotice: (text) => {
        bar.done();
        process.stderr.write(text + "\n");
      },
    });
  } catch (e) {
    if (!controller.signal.aborted) throw e;
    bar.done();
    const kept = received > 0 ? ` after ${formatBytes(received)}${total > 0 ? ` of ${formatBytes(total)}` : ""}; what was received is kept` : "";
    throw new InterruptedError(`download of ${spec} stopped${kept}: run the same command again to resume it`);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    bar.done();
  }
}
