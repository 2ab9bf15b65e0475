// One process downloads a file at a time. A second one waits for the first (saying so once) instead of failing, and
// finds the file in the cache when the first is done; a lock left by a process that died is taken over.
import { describeHolder, tryLock, type HeldLock } from "../../base/lock-file.js";

const POLL_MS = 200;

export async function waitForDownloadLock(
  lockPath: string,
  what: string,
  options: { signal?: AbortSignal; onNotice?: (text: string) => void },
): Promise<HeldLock> {
  let told = false;
  for (;;) {
    if (options.signal?.aborted) throw options.signal.reason;
    const got = await tryLock(lockPath);
    if (!("holder" in got)) return got;
    if (!told) {
      options.onNotice?.(`waiting for another kvzap (${describeHolder(got.holder)}) that is downloading ${what}`);
      told = true;
    }
    await sleep(POLL_MS, options.signal);
  }
}

export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
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
