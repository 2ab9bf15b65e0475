import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { UserError } from "../base/errors.js";
import { startHfServer, type HfServer } from "../../test/helpers/hf-server.js";
import { resolveModel, type DownloadProgress } from "./resolve.js";
import { cacheNameForUrl, safeFileName } from "./resolve/cache.js";

const FIXTURE = path.resolve(import.meta.dirname, "../../../shared/models/stories260K.gguf");
const FIXTURE_SIZE = statSync(FIXTURE).size;
const FIXTURE_SHA = sha256(FIXTURE);
const REPO = "kvzap-test/stories260K-GGUF";
const CUT_AT = 400_000;

function sha256(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

async function expectUserError(promise: Promise<unknown>, message: RegExp): Promise<UserError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(UserError);
  expect((error as UserError).message).toMatch(message);
  return error as UserError;
}

/** A port nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Where a plain URL's download lives: a name made from the whole URL. */
function urlTarget(url: string): string {
  const name = safeFileName(cacheNameForUrl(url));
  expect(name).toMatch(/^url_127\.0\.0\.1_\d+_[0-9a-f]{12}_[^/]+\.gguf$/);
  return path.join(cacheDir, "models", name);
}

let server: HfServer;
let cacheDir: string;
const splitDir = mkdtempSync(path.join(os.tmpdir(), "kvzap-split-"));
const SPLIT_PARTS = [0, 1].map((i) => path.join(splitDir, `split-0000${i + 1}-of-00002.gguf`));

beforeAll(async () => {
  const bytes = readFileSync(FIXTURE);
  writeFileSync(SPLIT_PARTS[0]!, bytes.subarray(0, 600_000));
  writeFileSync(SPLIT_PARTS[1]!, bytes.subarray(600_000));
  server = await startHfServer({
    repoFiles: [{ repo: REPO, path: "stories260K.gguf", source: FIXTURE, tags: ["F32"] }],
    files: {
      "/files/stories260K.gguf": FIXTURE,
      "/files/split-00001-of-00002.gguf": SPLIT_PARTS[0]!,
      "/files/split-00002-of-00002.gguf": SPLIT_PARTS[1]!,
    },
  });
});
afterAll(async () => {
  await server.close();
  rmSync(splitDir, { recursive: true, force: true });
});
beforeEach(() => {
  cacheDir = mkdtempSync(path.join(os.tmpdir(), "kvzap-resolve-"));
  server.requests.length = 0;
  server.cutAfter(0, 0);
  server.setRangeSupport(true);
});
afterEach(() => {
  rmSync(cacheDir, { recursive: true, force: true });
});

describe("resolveModel: local paths", () => {
  it("returns the absolute path of an existing file", async () => {
    expect(await resolveModel(FIXTURE, { cacheDir })).toBe(FIXTURE);
    const relative = path.relative(process.cwd(), FIXTURE);
    expect(await resolveModel(relative, { cacheDir })).toBe(FIXTURE);
  });

  it("rejects a missing file, also under ~/", async () => {
    await expectUserError(resolveModel("/nonexistent/dir/model.gguf", { cacheDir }), /^model file not found: \/nonexistent\/dir\/model\.gguf$/);
    await expectUserError(
      resolveModel("~/kvzap-no-such-model.gguf", { cacheDir }),
      new RegExp(`^model file not found: ${path.join(os.homedir(), "kvzap-no-such-model.gguf")}$`),
    );
  });

  it("rejects a directory", async () => {
    await expectUserError(resolveModel(cacheDir, { cacheDir }), new RegExp(`^model path is a directory: ${cacheDir}$`));
  });
});

describe("resolveModel: downloads", () => {
  it("downloads a direct URL with progress, byte-identical, then finds it in the cache offline", async () => {
    const seen: DownloadProgress[] = [];
    const url = `${server.origin}/files/stories260K.gguf`;
    const file = await resolveModel(url, { cacheDir, onProgress: (p) => seen.push(p) });

    expect(file).toBe(urlTarget(url));
    expect(sha256(file)).toBe(FIXTURE_SHA);
    expect(seen.length).toBeGreaterThan(2);
    for (const p of seen) {
      expect(p.totalBytes).toBe(FIXTURE_SIZE);
      expect(p.fileName).toBe("stories260K.gguf");
    }
    for (let i = 1; i < seen.length; i++) expect(seen[i]!.downloadedBytes).toBeGreaterThanOrEqual(seen[i - 1]!.downloadedBytes);
    expect(seen.at(-1)!.downloadedBytes).toBe(FIXTURE_SIZE);
    expect(readdirSync(path.join(cacheDir, "models")).sort()).toEqual([path.basename(file), `${path.basename(file)}.source.json`]);

    // A cache hit asks the server only whether the file is still the same (HEAD), and downloads nothing.
    server.requests.length = 0;
    expect(await resolveModel(url, { cacheDir })).toBe(file);
    expect(server.requests.map((r) => r.method)).toEqual(["HEAD"]);
  });

  it("keys the cache by the whole URL: another URL ending in the same file name is another download", async () => {
    const other = path.join(splitDir, "other-stories260K.gguf");
    const bytes = Buffer.from(readFileSync(FIXTURE));
    bytes[bytes.length - 1] ^= 0xff;
    writeFileSync(other, bytes);
    server.replace("/other/stories260K.gguf", other);
    const first = await resolveModel(`${server.origin}/files/stories260K.gguf`, { cacheDir });
    server.requests.length = 0;
    const second = await resolveModel(`${server.origin}/other/stories260K.gguf`, { cacheDir });
    expect(second).not.toBe(first);
    expect(sha256(second)).toBe(sha256(other));
    expect(sha256(first)).toBe(FIXTURE_SHA);
    expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual(["GET /other/stories260K.gguf"]);
  });

  it("notices a file changed on the server (ETag, size) and downloads it again; offline it uses the cached file", async () => {
    const changing = path.join(splitDir, "changing.gguf");
    writeFileSync(changing, readFileSync(FIXTURE));
    server.replace("/files/changing.gguf", changing);
    const url = `${server.origin}/files/changing.gguf`;
    const file = await resolveModel(url, { cacheDir });
    expect(sha256(file)).toBe(FIXTURE_SHA);
    const changed = Buffer.concat([readFileSync(FIXTURE), Buffer.alloc(16)]);
    writeFileSync(changing, changed);
    server.replace("/files/changing.gguf", changing);
    const notices: string[] = [];
    expect(await resolveModel(url, { cacheDir, onNotice: (t) => notices.push(t) })).toBe(file);
    expect(notices).toEqual([expect.stringMatching(/the file on the server changed \(ETag .* → .*\) since it was downloaded; downloading it again/)]);
    expect(statSync(file).size).toBe(changed.length);

    // Offline (the server is gone): the cached file is used, without an error.
    const other = await startHfServer({ files: { "/m/offline.gguf": FIXTURE } });
    const offlineUrl = `${other.origin}/m/offline.gguf`;
    const cached = await resolveModel(offlineUrl, { cacheDir });
    await other.close();
    expect(await resolveModel(offlineUrl, { cacheDir })).toBe(cached);
  });

  it("refuses a response that is not a GGUF file before it enters the cache, naming the URL", async () => {
    const page = path.join(splitDir, "page.html");
    writeFileSync(page, "<!DOCTYPE html><html><body>Sign in to continue</body></html>\n".repeat(50));
    server.replace("/files/page.gguf", page);
    const url = `${server.origin}/files/page.gguf`;
    for (let i = 0; i < 2; i++) {
      const error = await expectUserError(resolveModel(url, { cacheDir }), /did not send a GGUF model file \(it starts with "<!DOCTYPE html>/);
      expect(error.message).toContain(`could not download ${url}: ${url} did not send`);
    }
    expect(readdirSync(path.join(cacheDir, "models"))).toEqual([]);
  });

  it("resolves hf:user/repo:quant through the hub manifest and hf:user/repo/file.gguf directly", async () => {
    const seen: DownloadProgress[] = [];
    const file = await resolveModel(`hf:${REPO}:F32`, { cacheDir, hfEndpoint: server.origin, onProgress: (p) => seen.push(p) });

    expect(path.dirname(file)).toBe(path.join(cacheDir, "models"));
    expect(path.basename(file)).toBe("hf_kvzap-test_stories260K.F32.gguf");
    expect(sha256(file)).toBe(FIXTURE_SHA);
    expect(seen.at(-1)).toEqual({ downloadedBytes: FIXTURE_SIZE, totalBytes: FIXTURE_SIZE, fileName: path.basename(file) });
    expect(server.requests.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
      `GET /v2/${REPO}/manifests/F32 200`,
      `GET /${REPO}/resolve/main/stories260K.gguf 200`,
    ]);

    server.requests.length = 0;
    expect(await resolveModel(`hf:${REPO}:F32`, { cacheDir, hfEndpoint: server.origin })).toBe(file);
    expect(server.requests).toEqual([]);

    const direct = await resolveModel(`hf:${REPO}/stories260K.gguf`, { cacheDir, hfEndpoint: server.origin });
    expect(sha256(direct)).toBe(FIXTURE_SHA);
    expect(server.requests.map((r) => r.path)).toEqual([`/${REPO}/resolve/main/stories260K.gguf`]);
  });

  it("resumes an interrupted transfer on the next call with a Range request", async () => {
    const url = `${server.origin}/files/stories260K.gguf`;
    const target = urlTarget(url);
    server.cutAfter(CUT_AT);

    await expectUserError(
      resolveModel(url, { cacheDir, retries: 0 }),
      /broke off after .* \(connection closed by the server\); run the same command again to resume$/,
    );
    expect(existsSync(target)).toBe(false);
    // The client keeps what reached it: all the server sent, or (on a loaded machine) the last chunks may be lost
    // with the connection; either way the next call resumes from the partial file's end.
    const kept = statSync(`${target}.partial`).size;
    expect(kept).toBeGreaterThan(CUT_AT / 2);
    expect(kept).toBeLessThanOrEqual(CUT_AT);

    server.requests.length = 0;
    const seen: DownloadProgress[] = [];
    const file = await resolveModel(url, { cacheDir, retries: 0, onProgress: (p) => seen.push(p) });
    expect(file).toBe(target);
    expect(sha256(file)).toBe(FIXTURE_SHA);
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]).toMatchObject({ range: `bytes=${kept}-`, status: 206, bytesSent: FIXTURE_SIZE - kept });
    expect(server.requests[0]!.ifRange).toMatch(/^"[0-9a-f]+"$/);
    expect(seen[0]!.downloadedBytes).toBe(kept);
    expect(readdirSync(path.join(cacheDir, "models")).sort()).toEqual([path.basename(target), `${path.basename(target)}.source.json`]);
  });

  it("resumes within the same call when retries are allowed", async () => {
    server.cutAfter(CUT_AT, 2);
    const file = await resolveModel(`hf:${REPO}/stories260K.gguf`, { cacheDir, hfEndpoint: server.origin, retries: 2 });
    expect(sha256(file)).toBe(FIXTURE_SHA);
    // three requests: the first and a resume are cut, the second resume finishes; each resumes where the file ended
    const reqs = server.requests.map((r) => [r.range ?? null, r.bytesSent] as const);
    expect(reqs).toHaveLength(3);
    expect(reqs[0]).toEqual([null, CUT_AT]);
    const from1 = Number(/^bytes=(\d+)-$/.exec(reqs[1][0] ?? "")?.[1]);
    const from2 = Number(/^bytes=(\d+)-$/.exec(reqs[2][0] ?? "")?.[1]);
    expect(from1).toBeGreaterThan(0);
    expect(from1).toBeLessThanOrEqual(CUT_AT);
    expect(from2).toBeGreaterThan(from1);
    expect(from2).toBeLessThanOrEqual(from1 + CUT_AT);
    expect(reqs[2][1]).toBe(FIXTURE_SIZE - from2);
  });

  it("starts over when the server cannot resume, and says so", async () => {
    const url = `${server.origin}/files/stories260K.gguf`;
    server.setRangeSupport(false);
    server.cutAfter(CUT_AT);
    await expectUserError(resolveModel(url, { cacheDir }), /does not support resuming; run again to start over$/);
    expect(readdirSync(path.join(cacheDir, "models"))).toEqual([]);

    const file = await resolveModel(url, { cacheDir });
    expect(sha256(file)).toBe(FIXTURE_SHA);
    expect(server.requests.at(-1)).toMatchObject({ range: undefined, status: 200, bytesSent: FIXTURE_SIZE });
  });

  it("downloads every part of a split GGUF and returns the first", async () => {
    const url = `${server.origin}/files/split-00001-of-00002.gguf`;
    const file = await resolveModel(url, { cacheDir });
    expect(file).toBe(urlTarget(url));
    const second = path.join(path.dirname(file), path.basename(file).replace("00001-of", "00002-of"));
    expect(
      readdirSync(path.join(cacheDir, "models"))
        .filter((f) => f.endsWith(".gguf"))
        .sort(),
    ).toEqual([path.basename(file), path.basename(second)]);
    expect(sha256(file)).toBe(sha256(SPLIT_PARTS[0]!));
    expect(sha256(second)).toBe(sha256(SPLIT_PARTS[1]!));
  });

  it("waits, saying so, while another live process downloads the file, then takes the file it finished", async () => {
    const url = `${server.origin}/files/stories260K.gguf`;
    const target = urlTarget(url);
    mkdirSync(path.join(cacheDir, "models"));
    writeFileSync(`${target}.partial.lock`, String(process.ppid));
    const notices: string[] = [];
    const waiting = resolveModel(url, { cacheDir, onNotice: (t) => notices.push(t) });
    while (notices.length === 0) await new Promise((r) => setTimeout(r, 10));
    expect(notices).toEqual([expect.stringMatching(new RegExp(`waiting for another kvzap \\(pid ${process.ppid}\\) that is downloading ${url}`))]);
    // The other process finishes: its file is renamed into place and its lock goes.
    writeFileSync(target, readFileSync(FIXTURE));
    rmSync(`${target}.partial.lock`);
    expect(await waiting).toBe(target);
    expect(server.requests).toEqual([]);
    // a lock left by a process that is gone is taken over
    rmSync(target);
    writeFileSync(`${target}.partial.lock`, "2147483646");
    expect(sha256(await resolveModel(url, { cacheDir }))).toBe(FIXTURE_SHA);
  });

  it("keeps the partial file on abort and resumes from it", async () => {
    const url = `${server.origin}/files/stories260K.gguf`;
    const controller = new AbortController();
    server.cutAfter(CUT_AT); // stops the body so the abort lands mid-transfer
    const aborted = resolveModel(url, {
      cacheDir,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.downloadedBytes > 0) controller.abort(new Error("stopped by the user"));
      },
    });
    await expect(aborted).rejects.toThrow("stopped by the user");
    const partial = statSync(`${urlTarget(url)}.partial`).size;
    expect(partial).toBeGreaterThan(0);

    server.requests.length = 0;
    const file = await resolveModel(url, { cacheDir });
    expect(sha256(file)).toBe(FIXTURE_SHA);
    expect(server.requests[0]!.range).toBe(`bytes=${partial}-`);
  });
});

describe("resolveModel: download errors", () => {
  it("reports a refused connection", async () => {
    const port = await closedPort();
    const started = Date.now();
    await expectUserError(
      resolveModel(`http://127.0.0.1:${port}/m/model.gguf`, { cacheDir }),
      new RegExp(`^could not download http://127\\.0\\.0\\.1:${port}/m/model\\.gguf: cannot reach 127\\.0\\.0\\.1:${port} \\(connection refused\\)$`),
    );
    await expectUserError(
      resolveModel(`hf:${REPO}:F32`, { cacheDir, hfEndpoint: `http://127.0.0.1:${port}` }),
      new RegExp(`^could not download hf:${REPO}:F32: cannot reach 127\\.0\\.0\\.1:${port} \\(connection refused\\)$`),
    );
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("reports a host name that does not resolve", async () => {
    await expectUserError(
      resolveModel("http://nonexistent.invalid/model.gguf", { cacheDir }),
      /^could not download http:\/\/nonexistent\.invalid\/model\.gguf: cannot reach nonexistent\.invalid \((host name not found|DNS lookup failed)\)$/,
    );
  });

  it("reports a file, repository or quantization that is not on the server", async () => {
    const host = new URL(server.origin).host;
    await expectUserError(
      resolveModel(`${server.origin}/files/missing.gguf`, { cacheDir }),
      new RegExp(`: missing\\.gguf not found on ${host.replace(/\./g, "\\.")} \\(HTTP 404\\)$`),
    );
    await expectUserError(
      resolveModel(`hf:${REPO}:Q4_K_M`, { cacheDir, hfEndpoint: server.origin }),
      new RegExp(`^could not download hf:${REPO}:Q4_K_M: ${REPO}:Q4_K_M not found on ${host.replace(/\./g, "\\.")}`),
    );
    await expectUserError(resolveModel(`hf:${REPO}/nope.gguf`, { cacheDir, hfEndpoint: server.origin }), /not found on .* \(HTTP 404\)$/);
    expect(readdirSync(path.join(cacheDir, "models"))).toEqual([]);
  });
});
