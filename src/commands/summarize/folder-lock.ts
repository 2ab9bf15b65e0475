// One summarize run per output folder: two runs on the same DIR would both redo every input and both rewrite
// report.jsonl. The second one is told who holds the folder and stops before touching it.
import { join } from "node:path";
import { UsageError } from "../../base/errors.js";
import { describeHolder, tryLock, type HeldLock } from "../../base/lock-file.js";

export const LOCK_NAME = ".kvzap-summarize.lock";

export async function lockOutputFolder(outDir: string): Promise<HeldLock> {
  const path = join(outDir, LOCK_NAME);
  const got = await tryLock(path);
  if ("holder" in got) {
    // A usage matter (exit 2), as for a bad --out: this folder cannot be used now.
    throw new UsageError(
      `the output folder ${outDir} is in use by another kvzap summarize (${describeHolder(got.holder)}); ` +
        `wait for it to finish or choose another --out (the lock is ${path})`,
    );
  }
  return got;
}
