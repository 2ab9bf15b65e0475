// Turns what the user typed for a model (a path, an `hf:` URI, a URL) into a local GGUF file, downloading it into the
// cache when needed.
//
// URI parsing, `hf:` resolution (the hub's manifest API) and hub file names are node-llama-cpp's (resolve/hub.ts),
// so a file it downloaded is found by us and the other way round. The transfer itself is ours (resolve/download.ts):
// `resolveModelFile` downloads through ipull, which (as of 3.22) keeps progress only per 5 MB chunk and restarts an
// interrupted chunk from its start, retries a refused connection up to 150 times with backoff, and offers no way to
// change either. The pieces: resolve/local.ts (paths), resolve/hub.ts (hub resolution), resolve/cache.ts (cache
// names and source records), resolve/download.ts (the transfer), resolve/lock.ts (one downloader per file),
// resolve/network-errors.ts (failures in words).
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { UserError, errorMessage } from "../base/errors.js";
import { isRemoteModelSpec } from "../settings/schema.js";
import { cacheNameForUrl, changeOnServer, readSourceRecord, safeFileName, writeSourceRecord } from "./resolve/cache.js";
import { downloadWithResume, type DownloadContext, type DownloadProgress, type DownloadTarget } from "./resolve/download.js";
import { loadNodeLlamaCppInternals, type NlcInternals, type NlcModelDestination, type NlcParsedUri } from "./resolve/hub.js";
import { fileSize, isFile, resolveLocalModel } from "./resolve/local.js";
import { waitForDownloadLock } from "./resolve/lock.js";
import { asDiskError, hostOf, probeReachability } from "./resolve/network-errors.js";

export type { DownloadProgress } from "./resolve/download.js";
export { describeNetworkError } from "./resolve/network-errors.js";
export { loadNodeLlamaCppInternals } from "./resolve/hub.js";

export interface ResolveModelOptions {
  /** kvzap's cache directory; downloads go to `<cacheDir>/models`. */
  cacheDir: string;
  /** Called for every received block of a download (the caller throttles drawing). */
  onProgress?: (progress: DownloadProgress) => void;
  /** Told, in a sentence, what a person waiting should know: another process downloads the file, it changed, … */
  onNotice?: (text: string) => void;
  signal?: AbortSignal;
  /** Base URL of the Hugging Face hub for `hf:` URIs. Defaults to `$HF_ENDPOINT`, `$MODEL_ENDPOINT`, then huggingface.co. */
  hfEndpoint?: string;
  /** How many times a transfer that broke off after making progress is resumed within this call. Default 3. */
  retries?: number;
}

/** Returns the path of a local GGUF file for `spec`: a local path, `hf:user/repo:quant`, `hf:user/repo/file.gguf` or a URL. */
export async function resolveModel(spec: string, options: ResolveModelOptions): Promise<string> {
  const trimmed = spec.trim();
  if (trimmed === "") throw new UserError("no model given");
  if (!isRemoteModelSpec(trimmed)) return resolveLocalModel(trimmed);
  return resolveRemoteModel(trimmed, options);
}

async function resolveRemoteModel(spec: string, options: ResolveModelOptions): Promise<string> {
  const nlc = await loadNodeLlamaCppInternals();
  const hfEndpoint = options.hfEndpoint ?? process.env.HF_ENDPOINT ?? process.env.MODEL_ENDPOINT;
  const endpoints = hfEndpoint != null && hfEndpoint !== "" ? { huggingFace: hfEndpoint } : undefined;
  const directory = path.join(options.cacheDir, "models");
  const fail = (reason: string) => new UserError(`could not download ${spec}: ${reason}`);

  let destination: NlcModelDestination;
  try {
    destination = nlc.resolveModelDestination(spec, false, endpoints);
  } catch (e) {
    throw new UserError(`invalid model URI ${spec}: ${errorMessage(e)}`);
  }

  let url: string;
  let fileName: string;
  if (destination.type === "uri" && destination.parsedUri.type === "unresolved") {
    // `hf:user/repo:quant` names no file; a file cached under any name it may resolve to answers without the network.
    try {
      // Loaded here: the package entry point is heavy, and only this path needs it.
      const { resolveModelFile } = await import("node-llama-cpp");
      return await resolveModelFile(spec, { directory, download: false, cli: false, endpoints });
    } catch {
      // not cached: ask the hub which file the tag means
    }
    const hubHost = hostOf(nlc.resolveHuggingFaceEndpoint(endpoints));
    try {
      const resolved = await nlc.resolveParsedModelUri(destination.parsedUri, { endpoints, signal: options.signal });
      url = resolved.resolvedUrl;
      fileName = resolved.fullFilename;
    } catch (e) {
      if (options.signal?.aborted) throw options.signal.reason;
      const message = errorMessage(e);
      if (message.startsWith("Cannot get quantization"))
        throw fail(`${destination.parsedUri.uri.replace(/^hf:/, "")} not found on ${hubHost} (no such repository or quantization)`);
      if (message.startsWith("Failed to fetch manifest for resolving URI"))
        throw fail(`cannot reach ${hubHost} (${await probeReachability(nlc.resolveHuggingFaceEndpoint(endpoints), options.signal)})`);
      throw fail(`${hubHost} did not resolve it: ${message}`);
    }
  } else if (destination.type === "uri") {
    const parsed = destination.parsedUri as Extract<NlcParsedUri, { type: "resolved" }>;
    url = parsed.resolvedUrl;
    fileName = parsed.fullFilename;
  } else if (destination.type === "url") {
    url = destination.url;
    // A hub download URL is cached under the name its `hf:` form gets, as node-llama-cpp does (that name holds the
    // repository, the revision and the file); any other URL under a name made from the whole URL.
    let asUri: NlcModelDestination | undefined;
    try {
      asUri = nlc.resolveModelDestination(spec, true, endpoints);
    } catch {
      asUri = undefined;
    }
    fileName = asUri?.type === "uri" && asUri.parsedUri.type === "resolved" ? asUri.parsedUri.fullFilename : cacheNameForUrl(url);
  } else {
    return resolveLocalModel(destination.path);
  }

  if (/\.gguf\.part\d+of\d+$/i.test(new URL(url).pathname))
    throw fail("models split into binary parts (.gguf.partNofM) are not supported; join the parts and pass the file");

  const targets = splitTargets(nlc, url, path.join(directory, safeFileName(fileName)));
  if (destination.type === "url" && fileName.startsWith("url_"))
    for (const t of targets) t.displayName = decodeURIComponent(new URL(t.url).pathname.split("/").pop() ?? "") || undefined;
  const context: DownloadContext = { spec, endpoints, nlc, signal: options.signal, onProgress: options.onProgress, retries: options.retries };
  for (const target of targets) await ensureCached(target, context, options);
  return targets[0]!.filePath;
}

/** A split GGUF (`name-00001-of-00003.gguf`) is downloaded as all of its parts; the first one is what gets loaded. */
function splitTargets(nlc: NlcInternals, url: string, filePath: string): DownloadTarget[] {
  const partUrls = nlc.resolveSplitGgufParts(url);
  const partPaths = nlc.resolveSplitGgufParts(filePath);
  if (partUrls.length > 1 && partUrls.length === partPaths.length)
    return partUrls.map((partUrl, i) => ({ url: partUrl, filePath: partPaths[i]!, checkMagic: i === 0 }));
  return [{ url, filePath, checkMagic: true }];
}

// Two calls in one process asking for the same file share one transfer.
const inFlight = new Map<string, Promise<void>>();

function ensureCached(target: DownloadTarget, context: DownloadContext, options: ResolveModelOptions): Promise<void> {
  const running = inFlight.get(target.filePath);
  if (running != null) return running;
  const work = fetchIntoCache(target, context, options)
    .catch((e: unknown) => {
      throw asDiskError(e, target.filePath, context.spec) ?? e;
    })
    .finally(() => inFlight.delete(target.filePath));
  inFlight.set(target.filePath, work);
  return work;
}

async function fetchIntoCache(target: DownloadTarget, context: DownloadContext, options: ResolveModelOptions): Promise<void> {
  const cached = await isFile(target.filePath);
  if (cached) {
    // A file from an older version (or node-llama-cpp) has no record to compare with: it is used as it is.
    const record = await readSourceRecord(target.filePath);
    if (record === null || record.url !== target.url) return;
    const change = await changeOnServer(record, await fileSize(target.filePath), options.signal);
    if (change === null) return;
    options.onNotice?.(`${context.spec}: ${change} since it was downloaded; downloading it again`);
  }
  await mkdir(path.dirname(target.filePath), { recursive: true });
  const lock = await waitForDownloadLock(`${target.filePath}.partial.lock`, context.spec, options);
  try {
    // Another process finished it while this one waited.
    if (!cached && (await isFile(target.filePath))) return;
    const got = await downloadWithResume(target, context);
    await writeSourceRecord(target.filePath, { url: target.url, ...got, downloadedAt: new Date().toISOString() });
  } finally {
    await lock.release();
  }
}
