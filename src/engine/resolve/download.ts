// The transfer of one file into the cache: to `<file>.partial`, resumed with an HTTP Range request from the last byte
// written, guarded by If-Range so a file changed on the server starts over; what is not a GGUF file is refused.
import { mkdir, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { UserError } from "../../base/errors.js";
import { formatBytes } from "../../base/format.js";
import type { NlcEndpoints, NlcInternals } from "./hub.js";
import { fileSize } from "./local.js";
import { sleep } from "./lock.js";
import { describeNetworkError, hostOf } from "./network-errors.js";

export interface DownloadProgress {
  downloadedBytes: number;
  /** 0 while the size is unknown (a server that sends no Content-Length). */
  totalBytes: number;
  fileName: string;
}

export interface DownloadTarget {
  url: string;
  filePath: string;
  /** The name progress shows; default the cache file's name. */
  displayName?: string;
  /** Whether the file must start with the GGUF magic (every file but the later parts of a split model). */
  checkMagic: boolean;
}

export interface DownloadContext {
  spec: string;
  endpoints: NlcEndpoints;
  nlc: NlcInternals;
  signal?: AbortSignal;
  onProgress?: (progress: DownloadProgress) => void;
  /** How many times a transfer that broke off after making progress is resumed within this call. Default 3. */
  retries?: number;
}

const RETRY_DELAY_MS = 500;
const GGUF_MAGIC = "GGUF";

class NotGguf extends Error {
  constructor(readonly head: Uint8Array) {
    super("not a GGUF file");
  }
}

export function isGgufMagic(head: Uint8Array): boolean {
  return head.length >= 4 && Buffer.from(head.subarray(0, 4)).toString("latin1") === GGUF_MAGIC;
}

async function readHead(file: string): Promise<Uint8Array> {
  const handle = await open(file, "r");
  try {
    const buffer = Buffer.alloc(64);
    const { bytesRead } = await handle.read(buffer, 0, 64, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out.subarray(0, Math.min(out.length, 64));
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

/** What the server said about the file it sent: kept next to the cached file to notice a later change. */
export interface Downloaded {
  size: number;
  etag?: string;
  lastModified?: string;
}

/**
 * Downloads `target.url` into `target.filePath` through `<file>.partial`, resuming a partial file a stopped run left.
 * The caller holds the download lock. What is not a GGUF file never enters the cache.
 */
export async function downloadWithResume(target: DownloadTarget, context: DownloadContext): Promise<Downloaded> {
  const { spec, signal } = context;
  const retries = context.retries ?? 3;
  const partialPath = `${target.filePath}.partial`;
  const metaPath = `${target.filePath}.partial.json`;
  const fileName = target.displayName ?? path.basename(target.filePath);
  const host = hostOf(target.url);
  const fail = (reason: string) => new UserError(`could not download ${spec}: ${reason}`);
  const validators: { etag?: string; lastModified?: string } = {};

  await mkdir(path.dirname(target.filePath), { recursive: true });
  {
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
        throw fail(`${host} refused access (HTTP ${response.status}); for a gated or private Hugging Face model accept its terms and set HF_TOKEN`);
      }
      if (response.status === 404 || response.status === 410) {
        await response.body?.cancel();
        throw fail(`${urlFileName(target.url)} not found on ${host} (HTTP ${response.status})`);
      }
      if (response.status !== 200 && response.status !== 206) {
        await response.body?.cancel();
        throw fail(`${host} answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`);
      }
      if (response.body == null) throw fail(`${host} sent an empty response`);
      validators.etag = response.headers.get("etag") ?? undefined;
      validators.lastModified = response.headers.get("last-modified") ?? undefined;
      const notGguf = (head: Uint8Array) =>
        fail(
          `${target.url} did not send a GGUF model file (it starts with ${JSON.stringify(new TextDecoder().decode(head.subarray(0, 40)))}` +
            `${response.headers.get("content-type") ? `, Content-Type ${response.headers.get("content-type")}` : ""}); check the URL`,
        );

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
        await receiveBody(response.body, partialPath, offset, totalBytes, fileName, target.checkMagic, context.onProgress);
        const head = target.checkMagic ? await readHead(partialPath) : null;
        if (head !== null && !isGgufMagic(head)) {
          await discardPartial(partialPath, metaPath);
          throw notGguf(head);
        }
        break;
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        if (e instanceof NotGguf) {
          await discardPartial(partialPath, metaPath);
          throw notGguf(e.head);
        }
        if (!(e instanceof TransferInterrupted)) throw e;
        const received = await fileSize(partialPath);
        const canResume = (await readMeta(metaPath, target.url)) != null;
        const progress = `after ${formatBytes(received)}${totalBytes > 0 ? ` of ${formatBytes(totalBytes)}` : ""}`;
        if (!canResume) {
          await discardPartial(partialPath, metaPath);
          throw fail(`the transfer from ${host} broke off ${progress} (${e.reason}) and ${host} does not support resuming; run again to start over`);
        }
        if (e.receivedThisAttempt > 0 && attempt < retries) {
          attempt++;
          await sleep(RETRY_DELAY_MS * attempt, signal);
          continue;
        }
        throw fail(`the transfer from ${host} broke off ${progress} (${e.reason}); run the same command again to resume`);
      }
    }
    const size = await fileSize(partialPath);
    await rename(partialPath, target.filePath);
    await rm(metaPath, { force: true });
    return { size, ...validators };
  }
}

async function receiveBody(
  body: ReadableStream<Uint8Array>,
  partialPath: string,
  offset: number,
  totalBytes: number,
  fileName: string,
  checkMagic: boolean,
  onProgress: DownloadContext["onProgress"],
): Promise<void> {
  const file = await open(partialPath, offset > 0 ? "a" : "w");
  let downloadedBytes = offset;
  // A fresh transfer is checked as soon as its first bytes arrive, so an HTML page is not downloaded whole.
  let head: Uint8Array | null = offset > 0 || !checkMagic ? null : new Uint8Array(0);
  try {
    onProgress?.({ downloadedBytes, totalBytes, fileName });
    try {
      for await (const chunk of body) {
        if (head !== null) {
          head = concat(head, chunk);
          if (head.length >= GGUF_MAGIC.length) {
            if (!isGgufMagic(head)) throw new NotGguf(head);
            head = null;
          }
        }
        await file.write(chunk);
        downloadedBytes += chunk.byteLength;
        onProgress?.({ downloadedBytes, totalBytes, fileName });
      }
    } catch (e) {
      if ((e as Error).name === "AbortError" || e instanceof NotGguf) throw e;
      throw new TransferInterrupted(describeNetworkError(e), downloadedBytes - offset);
    }
    if (totalBytes > 0 && downloadedBytes !== totalBytes)
      throw new TransferInterrupted(`the server closed the connection early (${downloadedBytes} of ${totalBytes} bytes)`, downloadedBytes - offset);
    await file.sync();
  } finally {
    await file.close();
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

function parseContentRange(value: string | null): { start: number; end: number; total: number } | null {
  const match = value == null ? null : /^bytes (\d+)-(\d+)\/(\d+)$/.exec(value.trim());
  if (match == null) return null;
  return { start: Number(match[1]), end: Number(match[2]), total: Number(match[3]) };
}

function urlFileName(url: string): string {
  const last = new URL(url).pathname.split("/").filter(Boolean).pop() ?? url;
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}
