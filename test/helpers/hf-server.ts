// A local stand-in for the Hugging Face hub (and for any plain file host) on 127.0.0.1, so download tests run
// without a network. It answers exactly the requests node-llama-cpp makes for `hf:` URIs:
//   GET  /v2/<user>/<repo>/manifests/<tag>           → {"ggufFile": {"rfilename", "size"}}  (resolves `hf:user/repo:quant`)
//   GET  /<user>/<repo>/resolve/<branch>/<file>      → the file (download path of every hf: URI)
// plus any extra plain path registered in `files`. File responses honour single HTTP ranges (206, Accept-Ranges,
// Content-Range, ETag, If-Range) and can be cut mid-body to simulate a dropped connection.
import { createHash } from "node:crypto";
import { createReadStream, readFileSync, statSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface HfRepoFile {
  /** Repository id, `user/repo`. */
  repo: string;
  /** The file's path inside the repository, e.g. `stories260K.gguf`. */
  path: string;
  /** Local file served for it. */
  source: string;
  /** Manifest tags (quantizations, case-insensitive) that resolve to this file; `latest` is always accepted. */
  tags?: string[];
}

export interface HfServerOptions {
  repoFiles?: HfRepoFile[];
  /** Plain URL path (starting with `/`) → local file. */
  files?: Record<string, string>;
}

export interface RecordedRequest {
  method: string;
  path: string;
  range: string | undefined;
  ifRange: string | undefined;
  status: number;
  /** Body bytes actually sent before the response ended or was cut. */
  bytesSent: number;
}

export interface HfServer {
  /** `http://127.0.0.1:PORT` (no trailing slash). */
  origin: string;
  /** Every request seen, in order. */
  requests: RecordedRequest[];
  /** Cut the next file transfer(s) after this many body bytes (socket destroyed mid-body). */
  cutAfter(bytes: number, times?: number): void;
  /** Stop sending the next file transfer after this many body bytes, keeping the connection open (a stalled server). */
  stallAfter(bytes: number): void;
  /** Serve another local file at a plain path from now on (a file changed on the server: new size and ETag). */
  replace(urlPath: string, source: string): void;
  /** Pretend the server knows nothing about ranges: no Accept-Ranges, Range ignored (200 with the whole file). */
  setRangeSupport(enabled: boolean): void;
  close(): Promise<void>;
}

interface ServedFile {
  source: string;
  size: number;
  etag: string;
}

export async function startHfServer(options: HfServerOptions = {}): Promise<HfServer> {
  const served = new Map<string, ServedFile>();
  const manifests = new Map<string, HfRepoFile>();
  const describe = (source: string): ServedFile => ({
    source,
    size: statSync(source).size,
    etag: `"${createHash("sha256").update(readFileSync(source)).digest("hex").slice(0, 32)}"`,
  });
  for (const file of options.repoFiles ?? []) {
    served.set(`/${file.repo}/resolve/main/${file.path}`, describe(file.source));
    for (const tag of ["latest", ...(file.tags ?? [])]) manifests.set(`/v2/${file.repo}/manifests/${tag}`.toLowerCase(), file);
  }
  for (const [urlPath, source] of Object.entries(options.files ?? {})) served.set(urlPath, describe(source));

  const requests: RecordedRequest[] = [];
  let cutBytes = 0;
  let cutsLeft = 0;
  let rangeSupport = true;
  let stallBytes = Infinity;

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const record: RecordedRequest = {
      method: req.method ?? "GET",
      path: url.pathname,
      range: header(req, "range"),
      ifRange: header(req, "if-range"),
      status: 0,
      bytesSent: 0,
    };
    requests.push(record);
    const finish = (status: number, body: string, headers: Record<string, string | number> = {}) => {
      record.status = status;
      res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body), ...headers });
      res.end(req.method === "HEAD" ? undefined : body);
      record.bytesSent = req.method === "HEAD" ? 0 : Buffer.byteLength(body);
    };

    const manifest = manifests.get(url.pathname.toLowerCase());
    if (manifest != null && req.method === "GET") {
      const size = statSync(manifest.source).size;
      finish(200, JSON.stringify({ ggufFile: { rfilename: manifest.path, size } }));
      return;
    }
    if (url.pathname.startsWith("/v2/")) {
      finish(404, JSON.stringify({ error: "Repository or manifest not found" }));
      return;
    }

    const file = served.get(decodeURIComponent(url.pathname));
    if (file == null || (req.method !== "GET" && req.method !== "HEAD")) {
      finish(404, JSON.stringify({ error: "Entry not found" }));
      return;
    }

    let start = 0;
    let end = file.size - 1;
    let status = 200;
    const headers: Record<string, string | number> = {
      "Content-Type": "application/octet-stream",
      ETag: file.etag,
    };
    if (rangeSupport) headers["Accept-Ranges"] = "bytes";
    const range = record.range;
    const rangeApplies = rangeSupport && range != null && (record.ifRange == null || record.ifRange === file.etag);
    if (rangeApplies) {
      const match = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      const parsed = match == null ? null : parseRange(match[1] ?? "", match[2] ?? "", file.size);
      if (parsed == null) {
        finish(416, "", { "Content-Range": `bytes */${file.size}` });
        return;
      }
      [start, end] = parsed;
      status = 206;
      headers["Content-Range"] = `bytes ${start}-${end}/${file.size}`;
    }
    headers["Content-Length"] = end - start + 1;
    record.status = status;
    res.writeHead(status, headers);
    if (req.method === "HEAD" || end < start) {
      res.end();
      return;
    }

    const cut = cutsLeft > 0 ? cutBytes : Infinity;
    if (cutsLeft > 0) cutsLeft--;
    const stall = stallBytes;
    stallBytes = Infinity;
    const stream = createReadStream(file.source, { start, end, highWaterMark: 16 * 1024 });
    stream.on("data", (chunk: string | Buffer) => {
      const buffer = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      const room = cut - record.bytesSent;
      if (stall - record.bytesSent < buffer.length && room >= buffer.length) {
        // Send what is allowed, then nothing more: the connection stays open until the client gives up.
        const allowed = Math.max(0, stall - record.bytesSent);
        stream.destroy();
        record.bytesSent += allowed;
        res.write(buffer.subarray(0, allowed));
        return;
      }
      if (room >= buffer.length) {
        record.bytesSent += buffer.length;
        if (!res.write(buffer)) {
          stream.pause();
          res.once("drain", () => stream.resume());
        }
        return;
      }
      stream.destroy();
      record.bytesSent += room;
      // Let what was promised reach the client, then drop the connection without finishing the body.
      // (end, not destroy: a close with unread data can reset the connection and lose bytes already written)
      res.write(buffer.subarray(0, room), () => req.socket.end());
    });
    stream.on("end", () => res.end());
    stream.on("error", () => req.socket.destroy());
    res.on("close", () => stream.destroy());
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    cutAfter(bytes, times = 1) {
      cutBytes = bytes;
      cutsLeft = times;
    },
    stallAfter(bytes) {
      stallBytes = bytes;
    },
    replace(urlPath, source) {
      served.set(urlPath, describe(source));
    },
    setRangeSupport(enabled) {
      rangeSupport = enabled;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function parseRange(first: string, last: string, size: number): [number, number] | null {
  if (first === "" && last === "") return null;
  if (first === "") {
    const suffix = Number(last);
    return suffix === 0 ? null : [Math.max(0, size - suffix), size - 1];
  }
  const start = Number(first);
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  return start >= size || end < start ? null : [start, end];
}
