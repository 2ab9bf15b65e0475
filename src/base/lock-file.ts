// A lock held by one process at a time: a file created exclusively, holding who took it. A lock whose process is
// gone (killed, crashed) is taken over, so a kill -9 never leaves a folder locked for good.
import { readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import { isProcessAlive } from "./process.js";

export interface LockHolder {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  since: string;
}

export interface HeldLock {
  release(): Promise<void>;
}

async function readHolder(path: string): Promise<LockHolder | null> {
  try {
    const text = await readFile(path, "utf8");
    const parsed = JSON.parse(text) as Partial<LockHolder> | number;
    // An older lock holds just the pid.
    if (typeof parsed === "number") return Number.isInteger(parsed) && parsed > 0 ? { pid: parsed, host: os.hostname(), since: "" } : null;
    if (typeof parsed.pid !== "number") return null;
    return { pid: parsed.pid, host: String(parsed.host ?? ""), since: String(parsed.since ?? "") };
  } catch {
    // An older plain-pid lock, or one being written right now.
    const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
    return Number.isInteger(pid) && pid > 0 ? { pid, host: os.hostname(), since: "" } : null;
  }
}

/**
 * Takes the lock at `path`, or returns who holds it. A holder on another host is taken as alive (its pid says
 * nothing here); a holder on this host whose process is gone is replaced.
 */
export async function tryLock(path: string): Promise<HeldLock | { holder: LockHolder }> {
  const mine: LockHolder = { pid: process.pid, host: os.hostname(), since: new Date().toISOString() };
  for (let tries = 0; tries < 3; tries++) {
    try {
      await writeFile(path, JSON.stringify(mine), { flag: "wx" });
      return {
        release: async () => {
          const now = await readHolder(path);
          if (now?.pid === mine.pid && now.since === mine.since) await rm(path, { force: true });
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const holder = await readHolder(path);
    if (holder === null) {
      // Created a moment ago and not yet written: give its writer a moment.
      await new Promise((r) => setTimeout(r, 50));
      const again = await readHolder(path);
      if (again === null) await rm(path, { force: true });
      continue;
    }
    if (holder.pid !== process.pid && (holder.host !== os.hostname() || isProcessAlive(holder.pid))) return { holder };
    await rm(path, { force: true });
  }
  throw new Error(`cannot take the lock ${path}`);
}

export function describeHolder(holder: LockHolder): string {
  const where = holder.host !== "" && holder.host !== os.hostname() ? ` on ${holder.host}` : "";
  const since = holder.since !== "" ? `, since ${holder.since.replace("T", " ").replace(/\.\d+Z$/, " UTC")}` : "";
  return `pid ${holder.pid}${where}${since}`;
}
