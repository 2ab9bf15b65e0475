// Why a download failed, in words a person can act on: socket-level causes, unreachable hosts, a cache that
// cannot be written.
import path from "node:path";
import { UserError } from "../../base/errors.js";

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
export async function probeReachability(url: string, signal: AbortSignal | undefined): Promise<string> {
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

/** A failure to write the cache (full disk, no permission) becomes one sentence; anything else is left alone. */
export function asDiskError(error: unknown, filePath: string, spec: string): UserError | undefined {
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

export function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}
