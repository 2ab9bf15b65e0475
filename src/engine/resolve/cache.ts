// Where a download lives in the cache, and what is known about its source. A file is keyed by its source: a hub
// file by node-llama-cpp's name (user, repository, revision when not main, file), a plain URL by its host, a hash of
// the whole URL and its file name, so two URLs that end in the same name never share a file. Next to it,
// `<file>.source.json` keeps the URL, size and ETag, so a file changed on the server is noticed on the next use.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "../../base/files.js";

export interface SourceRecord {
  url: string;
  size: number;
  etag?: string;
  lastModified?: string;
  downloadedAt: string;
}

/** How long the check that a cached file is still the server's may take before the cached file is used as it is. */
const CHECK_TIMEOUT_MS = 5000;

export function cacheNameForUrl(url: string): string {
  const parsed = new URL(url);
  const last = parsed.pathname.split("/").filter(Boolean).pop() ?? "";
  let name: string;
  try {
    name = decodeURIComponent(last);
  } catch {
    name = last;
  }
  const hash = createHash("sha256").update(url).digest("hex").slice(0, 12);
  return `url_${parsed.host}_${hash}_${name === "" ? "model.gguf" : name}`;
}

export function safeFileName(name: string): string {
  const cleaned = name.replace(/[<>:"/\\|?*\u0000-\u001f]/g, "_").replace(/^\.+/, "_");
  return cleaned === "" ? "model.gguf" : cleaned;
}

function recordPath(filePath: string): string {
  return `${filePath}.source.json`;
}

export async function readSourceRecord(filePath: string): Promise<SourceRecord | null> {
  try {
    const r = JSON.parse(await readFile(recordPath(filePath), "utf8")) as Partial<SourceRecord>;
    return typeof r.url === "string" && typeof r.size === "number" ? (r as SourceRecord) : null;
  } catch {
    return null;
  }
}

export async function writeSourceRecord(filePath: string, record: SourceRecord): Promise<void> {
  await writeFileAtomic(recordPath(filePath), Buffer.from(JSON.stringify(record) + "\n"));
}

/**
 * Asks the server (HEAD) whether the file at `record.url` is still the one cached: returns why it is not, or null
 * when it is, or when the server cannot tell or cannot be reached (then the cached file is used: offline use works).
 */
export async function changeOnServer(record: SourceRecord, size: number, signal: AbortSignal | undefined): Promise<string | null> {
  const timeout = AbortSignal.timeout(CHECK_TIMEOUT_MS);
  let response: Response;
  try {
    response = await fetch(record.url, {
      method: "HEAD",
      headers: { "Accept-Encoding": "identity" },
      redirect: "follow",
      signal: signal == null ? timeout : AbortSignal.any([signal, timeout]),
    });
  } catch {
    if (signal?.aborted) throw signal.reason;
    return null;
  }
  if (response.status !== 200) return null;
  const etag = response.headers.get("etag");
  const length = Number(response.headers.get("content-length"));
  if (etag != null && record.etag != null && etag !== record.etag) return `the file on the server changed (ETag ${record.etag} → ${etag})`;
  if (Number.isFinite(length) && length > 0 && length !== size) return `the file on the server changed (${size} → ${length} bytes)`;
  return null;
}
