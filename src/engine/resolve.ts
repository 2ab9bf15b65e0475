// Turns what the user typed for a model (a path, an `hf:` URI, a URL) into a local GGUF file, downloading it into the
// cache when needed.
//
// URI parsing, `hf:` resolution (the hub's manifest API) and the cache file names are node-llama-cpp's, so a file it
// downloaded is found by us and the other way round. The transfer itself is ours: `resolveModelFile` downloads through
// ipull, which (as of 3.22) keeps progress only per 5 MB chunk and restarts an interrupted chunk from its start, retries
// a refused connection up to 150 times with backoff (minutes, and the abort signal is not consulted until the transfer
// starts), and offers no way to change either. Here a transfer goes to `<file>.partial` and resumes with an HTTP Range
// request from the last byte written, guarded by If-Range so a file changed on the server starts over.
import { createRequire } from "node:module";
import { mkdir, open, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { UserError, errorMessage } from "../base/errors.js";
import { isRemoteModelSpec } from "../settings/schema.js";

export interface DownloadProgress {
  downloadedBytes: number;
  /** 0 while the size is unknown (a server that sends no Content-Length). */
  totalBytes: number;
  fileName: string;
}

export interface ResolveModelOptions {
  /** kvzap's cache directory; downloads go to `<cacheDir>/models`. */
  cacheDir: string;
  /** Called for every received block of a download (the caller throttles drawing). */
  onProgress?: (progress: DownloadProgress) => void;
  signal?: AbortSignal;
  /** Base URL of the Hugging Face hub for `hf:` URIs. Defaults to `$HF_ENDPOINT`, `$MODEL_ENDPOINT`, then huggingface.co. */
  hfEndpoint?: string;
  /** How many times a transfer that broke off after making progress is resumed within this call. Default 3. */
  retries?: number;
}

const RETRY_DELAY_MS = 500;

/** Returns the path of a local GGUF file for `spec`: a local path, `hf:user/repo:quant`, `hf:user/repo/file.gguf` or a URL. */
export async function resolveModel(spec: string, options: ResolveModelOptions): Promise<string> {
  const trimmed = spec.trim();
  if (trimmed === "") throw new UserError("no model given");
  if (!isRemoteModelSpec(trimmed)) return resolveLocalModel(trimmed);
  return resolveRemoteModel(trimmed, options);
}

async function resolveLocalModel(spec: string): Promise<string> {
  const expanded = spec === "~" ? os.homedir() : spec.startsWith("~/") ? path.join(os.homedir(), spec.slice(2)) : spec;
  const filePath = path.resolve(expanded);
  let info;
  try {
    info = await stat(filePath);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new UserError(`model file not found: ${filePath}`);
    if (code === "EACCES" || code === "EPERM") throw new UserError(`cannot read model file ${filePath}: permission denied`);
    throw new UserError(`cannot read model file ${filePath}: ${errorMessage(e)}`);
  }
  if (info.isDirectory()) throw new UserError(`model path is a directory: ${filePath}`);
  if (!info.isFile()) throw new UserError(`model path is not a regular file: ${filePath}`);
  return filePath;
}

interface DownloadTarget {
  url: string;
  filePath: string;
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
    // A hub download URL is cached under the name its `hf:` form gets, as node-llama-cpp does.
    let asUri: NlcModelDestination | undefined;
    try {
      asUri = nlc.resolveModelDestination(spec, true, endpoints);
    } catch {
      asUri = undefined;
    }
    fileName =
      asUri?.type === "uri" && asUri.parsedUri.type === "resolved" ? asUri.parsedUri.fullFilename : fileNameFromUrl(url);
  } else {
    return resolveLocalModel(destination.path);
  }

  if (/\.gguf\.part\d+of\d+$/i.test(new URL(url).pathname))
    throw fail("models split into binary parts (.gguf.partNofM) are not supported; join the parts and pass the file");

  const targets = splitTargets(nlc, url, path.join(directory, safeFileName(fileName)));
  for (const target of targets) {
    if (await isFile(target.filePath)) continue;
    await downloadOnce(target, { ...options, spec, endpoints, nlc });
  }
  return targets[0]!.filePath;
}

/** A split GGUF (`name-00001-of-00003.gguf`) is downloaded as all of its parts; the first one is what gets loaded. */
function splitTargets(nlc: NlcInternals, url: string, filePath: string): DownloadTarget[] {
  const partUrls = nlc.resolveSplitGgufParts(url);
  const partPaths = nlc.resolveSplitGgufParts(filePath);
  if (partUrls.length > 1 && partUrls.length === partPaths.length)
    return partUrls.map((partUrl, i) => ({ url: partUrl, filePath: partPaths[i]! }));
  return [{ url, filePath }];
}

interface DownloadContext extends ResolveModelOptions {
  spec: string;
  endpoints: { huggingFace: string } | undefined;
  nlc: NlcInternals;
}

// Two calls in one process asking for the same file share one transfer.
const inFlight = new Map<string, Promise<void>>();

function downloadOnce(target: DownloadTarget, context: DownloadContext): Promise<void> {
  const running = inFlight.get(target.filePath);
  if (running != null) return running;
  const download = downloadWithResume(target, context)
    .catch((e: unknown) => {
      throw asDiskError(e, target.filePath, context.spec) ?? e;
    })
    .finally(() => inFlight.delete(target.filePath));
  inFlight.set(target.filePath, download);
  return download;
}

/** A failure to write the cache (full disk, no permission) becomes one sentence; anything else is left alone. */
function asDiskError(error: unknown, filePath: string, spec: string): UserError | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const reasons: Record<string, string> = {
    ENOSPC: "the disk is full",
    EDQUOT: "the disk quota is exhausted",
    EACCES: "permission denied",
    EPERM: "permission denied",
    EROFS: "the file system is read-only",
  };
  if (error instanceof UserError || code == null || reasons[code] == null) return undefined;
  return new UserError(`could not download ${spec}: cannot write ${path.dirname(filePath)} (${reasons[code]})`);
}

interface PartialMeta {
  url: string;
  totalBytes: number;
  etag?: string;
  lastModified?: string;
}

class TransferInterrupted extends Error {
  constructor(
    readonly reason: string,
    readonly receivedThisAttempt: number,
  ) {
    super(reason);
  }
}

async function downloadWithResume(target: DownloadTarget, context: DownloadContext): Promise<void> {
  const { spec, signal } = context;
  const retries = context.retries ?? 3;
  const partialPath = `${target.filePath}.partial`;
  const metaPath = `${target.filePath}.partial.json`;
  const lockPath = `${target.filePath}.partial.lock`;
  const fileName = path.basename(target.filePath);
  const host = hostOf(target.url);
  const fail = (reason: string) => new UserError(`could not download ${spec}: ${reason}`);

  await mkdir(path.dirname(target.filePath), { recursive: true });
  await acquireDownloadLock(lockPath, spec);
  try {
    let authHeaders: Record<string, string>[] | undefined;
    let headers: Record<string, string> = {};
    let attempt = 0;
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const meta = await readMeta(metaPath, target.url);
      const have = meta == null ? 0 : await fileSize(partialPath);
      if (meta == null) await rm(partialPath, { force: true });

      const request: Record<string, string> = { "Accept-Encoding": "identity", ...headers };
      if (meta != null && have > 0) {
        request.Range = `bytes=${have}-`;
        const validator = meta.etag != null && !meta.etag.startsWith("W/") ? meta.etag : meta.lastModified;
        if (validator != null) request["If-Range"] = validator;
      }

      let response: Response;
      try {
        response = await fetch(target.url, { headers: request, signal, redirect: "follow" });
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        const kept = have > 0 ? `; the ${formatBytes(have)} already downloaded are kept, run again to resume` : "";
        throw fail(`cannot reach ${host} (${describeNetworkError(e)})${kept}`);
      }

      if (response.status === 416 && meta != null && have > 0) {
        await response.body?.cancel();
        if (meta.totalBytes > 0 && have === meta.totalBytes) break; // the partial file was complete
        await discardPartial(partialPath, metaPath);
        continue;
      }
      if ((response.status === 401 || response.status === 403) && authHeaders == null) {
        await response.body?.cancel();
        authHeaders = await context.nlc.resolveModelFileAccessTokensTryHeaders(target.url, undefined, context.endpoints);
      }
      if ((response.status === 401 || response.status === 403) && authHeaders != null) {
        const next = authHeaders.shift();
        if (next != null) {
          headers = next;
          continue;
        }
        throw fail(
          `${host} refused access (HTTP ${response.status}); for a gated or private Hugging Face model accept its terms and set HF_TOKEN`,
        );
      }
      if (response.status === 404 || response.status === 410) {
        await response.body?.cancel();
        throw fail(`${fileName.replace(/^hf_/, "")} not found on ${host} (HTTP ${response.status})`);
      }
      if (response.status !== 200 && response.status !== 206) {
        await response.body?.cancel();
        throw fail(`${host} answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`);
      }
      if (response.body == null) throw fail(`${host} sent an empty response`);

      let offset = 0;
      let totalBytes: number;
      if (response.status === 206 && meta != null && have > 0) {
        const range = parseContentRange(response.headers.get("content-range"));
        if (range == null || range.start !== have || (meta.totalBytes > 0 && range.total !== meta.totalBytes)) {
          await response.body.cancel();
          await discardPartial(partialPath, metaPath);
          continue;
        }
        offset = have;
        totalBytes = range.total;
      } else {
        // A full answer: a fresh start, or the server ignored the Range / the file changed since the partial was made.
        // A compressed answer (asked for identity, got something else anyway) is decoded by fetch, so its length says
        // nothing about the file's.
        const encoded = (response.headers.get("content-encoding") ?? "identity").toLowerCase() !== "identity";
        const length = Number(response.headers.get("content-length"));
        totalBytes = response.status === 200 && !encoded && Number.isFinite(length) && length > 0 ? length : 0;
        const resumable = response.headers.get("accept-ranges")?.toLowerCase() === "bytes" && totalBytes > 0;
        await rm(partialPath, { force: true });
        if (resumable)
          await writeMeta(metaPath, {
            url: target.url,
            totalBytes,
            etag: response.headers.get("etag") ?? undefined,
            lastModified: response.headers.get("last-modified") ?? undefined,
          });
        else await rm(metaPath, { force: true });
      }

      try {
        await receiveBody(response.body, partialPath, offset, totalBytes, fileName, context.onProgress);
        break;
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        if (!(e instanceof TransferInterrupted)) throw e;
        const received = await fileSize(partialPath);
        const canResume = (await readMeta(metaPath, target.url)) != null;
        const progress = `after ${formatBytes(received)}${totalBytes > 0 ? ` of ${formatBytes(totalBytes)}` : ""}`;
        if (!canResume) {
          await discardPartial(partialPath, metaPath);
          throw fail(
            `the transfer from ${host} broke off ${progress} (${e.reason}) and ${host} does not support resuming; run again to start over`,
          );
        }
        if (e.receivedThisAttempt > 0 && attempt < retries) {
          attempt++;
          await sleep(RETRY_DELAY_MS * attempt, signal);
          continue;
        }
        throw fail(`the transfer from ${host} broke off ${progress} (${e.reason}); run the same command again to resume`);
      }
    }
    await rename(partialPath, target.filePath);
    await rm(metaPath, { force: true });
  } finally {
    await rm(lockPath, { force: true });
  }
}

async function receiveBody(
  body: ReadableStream<Uint8Array>,
  partialPath: string,
  offset: number,
  totalBytes: number,
  fileName: string,
  onProgress: ResolveModelOptions["onProgress"],
): Promise<void> {
  const file = await open(partialPath, offset > 0 ? "a" : "w");
  let downloadedBytes = offset;
  try {
    onProgress?.({ downloadedBytes, totalBytes, fileName });
    try {
      for await (const chunk of body) {
        await file.write(chunk);
        downloadedBytes += chunk.byteLength;
        onProgress?.({ downloadedBytes, totalBytes, fileName });
      }
    } catch (e) {
      if ((e as Error).name === "AbortError") throw e;
      throw new TransferInterrupted(describeNetworkError(e), downloadedBytes - offset);
    }
    if (totalBytes > 0 && downloadedBytes !== totalBytes)
      throw new TransferInterrupted(
        `the server closed the connection early (${downloadedBytes} of ${totalBytes} bytes)`,
        downloadedBytes - offset,
      );
    await file.sync();
  } finally {
    await file.close();
  }
}

/** One process downloads a file at a time; a lock left by a process that died is taken over. */
async function acquireDownloadLock(lockPath: string, spec: string): Promise<void> {
  for (let tries = 0; tries < 2; tries++) {
    try {
      await writeFile(lockPath, String(process.pid), { flag: "wx" });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const owner = Number((await readFile(lockPath, "utf8").catch(() => "")).trim());
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isProcessAlive(owner))
      throw new UserError(`could not download ${spec}: another process (pid ${owner}) is downloading it; wait for it to finish`);
    await rm(lockPath, { force: true });
  }
  throw new UserError(`could not download ${spec}: cannot take the download lock ${lockPath}`);
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function readMeta(metaPath: string, url: string): Promise<PartialMeta | null> {
  try {
    const meta = JSON.parse(await readFile(metaPath, "utf8")) as Partial<PartialMeta>;
    if (meta.url !== url || typeof meta.totalBytes !== "number") return null;
    return meta as PartialMeta;
  } catch {
    return null;
  }
}

async function writeMeta(metaPath: string, meta: PartialMeta): Promise<void> {
  await writeFile(metaPath, JSON.stringify(meta));
}

async function discardPartial(partialPath: string, metaPath: string): Promise<void> {
  await rm(partialPath, { force: true });
  await rm(metaPath, { force: true });
}

async function fileSize(filePath: string): Promise<number> {
  try {
    return (await stat(filePath)).size;
  } catch {
    return 0;
  }
}

async function isFile(filePath: string): Promise<boolean> {
  try {
    return (await stat(filePath)).isFile();
  } catch {
    return false;
  }
}

function parseContentRange(value: string | null): { start: number; end: number; total: number } | null {
  const match = value == null ? null : /^bytes (\d+)-(\d+)\/(\d+)$/.exec(value.trim());
  if (match == null) return null;
  return { start: Number(match[1]), end: Number(match[2]), total: Number(match[3]) };
}

function fileNameFromUrl(url: string): string {
  const last = new URL(url).pathname.split("/").filter(Boolean).pop() ?? "";
  let name: string;
  try {
    name = decodeURIComponent(last);
  } catch {
    name = last;
  }
  return name === "" ? "model.gguf" : name;
}

function safeFileName(name: string): string {
  const cleaned = name.replace(/[<>:"/\\|?*\u0000-\u001f]/g, "_").replace(/^\.+/, "_");
  return cleaned === "" ? "model.gguf" : cleaned;
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** Why a fetch failed, in words: the socket-level cause undici keeps under `cause`. */
export function describeNetworkError(error: unknown): string {
  let current: unknown = error;
  let code: string | undefined;
  let detail: string | undefined;
  for (let depth = 0; current != null && depth < 5; depth++) {
    const candidate = current as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
    if (typeof candidate.code === "string") code = candidate.code;
    if (typeof candidate.message === "string" && candidate.message !== "") detail = candidate.message;
    if (code == null && Array.isArray(candidate.errors) && candidate.errors.length > 0) {
      current = candidate.errors[0];
      continue;
    }
    current = candidate.cause;
  }
  switch (code) {
    case "ECONNREFUSED":
      return "connection refused";
    case "ENOTFOUND":
      return "host name not found";
    case "EAI_AGAIN":
      return "DNS lookup failed";
    case "ETIMEDOUT":
    case "UND_ERR_CONNECT_TIMEOUT":
      return "connection timed out";
    case "ECONNRESET":
      return "connection reset";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return "network unreachable";
    case "UND_ERR_SOCKET":
      return "connection closed by the server";
    case "UND_ERR_HEADERS_TIMEOUT":
    case "UND_ERR_BODY_TIMEOUT":
      return "the server stopped responding";
  }
  if (code != null && /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO_VERIFY/.test(code)) return `TLS certificate problem: ${detail ?? code}`;
  return detail ?? code ?? "unknown network error";
}

/** node-llama-cpp reports only "fetch failed" when the hub cannot be reached; one request of our own finds out why. */
async function probeReachability(url: string, signal: AbortSignal | undefined): Promise<string> {
  const timeout = AbortSignal.timeout(10_000);
  try {
    const response = await fetch(url, { method: "HEAD", signal: signal == null ? timeout : AbortSignal.any([signal, timeout]) });
    await response.body?.cancel();
    return "fetch failed";
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    return timeout.aborted ? "connection timed out" : describeNetworkError(e);
  }
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

// --- node-llama-cpp internals -------------------------------------------------------------------------------------
// Its URI parsing and hub resolution are not exported from the package entry point; they are loaded from its dist
// folder by file URL (which the package's `exports` map does not cover). package.json pins the exact version, and
// src/engine/node-llama-cpp.test.ts fails when these files or names move.

type NlcParsedUri =
  | { type: "resolved"; uri: string; resolvedUrl: string; filePrefix: string; filename: string; fullFilename: string }
  | { type: "unresolved"; uri: string; filePrefix: string; baseFilename: string; possibleFullFilenames: string[] };

type NlcModelDestination =
  | { type: "url"; url: string }
  | { type: "uri"; url?: string; uri: string; parsedUri: NlcParsedUri }
  | { type: "file"; path: string };

type NlcEndpoints = { huggingFace?: string } | undefined;

interface NlcInternals {
  resolveModelDestination(destination: string, convertUrlToUri: boolean, endpoints: NlcEndpoints): NlcModelDestination;
  resolveParsedModelUri(
    uri: NlcParsedUri,
    options: { endpoints?: NlcEndpoints; signal?: AbortSignal },
  ): Promise<Extract<NlcParsedUri, { type: "resolved" }>>;
  resolveHuggingFaceEndpoint(endpoints: NlcEndpoints): string;
  resolveModelFileAccessTokensTryHeaders(url: string, tokens: undefined, endpoints: NlcEndpoints): Promise<Record<string, string>[]>;
  resolveSplitGgufParts(pathOrUrl: string): string[];
}

let internals: Promise<NlcInternals> | undefined;

export function loadNodeLlamaCppInternals(): Promise<NlcInternals> {
  internals ??= (async () => {
    const entry = pathToFileURL(createRequire(import.meta.url).resolve("node-llama-cpp"));
    const load = async (relative: string) => (await import(new URL(relative, entry).href)) as Record<string, unknown>;
    const [destination, parse, endpoints, tokens, split] = await Promise.all([
      load("./utils/resolveModelDestination.js"),
      load("./utils/parseModelUri.js"),
      load("./utils/modelDownloadEndpoints.js"),
      load("./utils/modelFileAccessTokens.js"),
      load("./gguf/utils/resolveSplitGgufParts.js"),
    ]);
    const pick = (module: Record<string, unknown>, name: keyof NlcInternals) => {
      const fn = module[name];
      if (typeof fn !== "function")
        throw new UserError(`the installed node-llama-cpp lacks ${name}; kvzap needs node-llama-cpp 3.22 (reinstall kvzap)`);
      return fn;
    };
    return {
      resolveModelDestination: pick(destination, "resolveModelDestination"),
      resolveParsedModelUri: pick(parse, "resolveParsedModelUri"),
      resolveHuggingFaceEndpoint: pick(endpoints, "resolveHuggingFaceEndpoint"),
      resolveModelFileAccessTokensTryHeaders: pick(tokens, "resolveModelFileAccessTokensTryHeaders"),
      resolveSplitGgufParts: pick(split, "resolveSplitGgufParts"),
    } as NlcInternals;
  })();
  internals.catch(() => {
    internals = undefined;
  });
  return internals;
}
