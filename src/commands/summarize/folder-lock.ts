// One summarize run per output folder: two runs on the same DIR would both redo every input and both rewrite
// report.jsonl. The second one is told who holds the folder and stops before touching it.
import { join } from "node:path";
import { UserError } from "../../cli/errors.js";
import { describeHolder, tryLock, type HeldLock } from "../../util/lock-file.js";

export const LOCK_NAME = ".kvzap-summarize.lock";

/** Exit code of a run refused because another holds its folder: a usage matter, as for a bad --out. */
export const FOLDER_BUSY_EXIT_CODE = 2;

export async function lockOutputFolder(outDir: string): Promise<HeldLock> {
  const path = join(outDir, LOCK_NAME);
  const got = await tryLock(path);
  if ("holder" in got) {
    throw new UserError(
      `the output folder ${outDir} is in use by another kvzap summarize (${describeHolder(got.holder)}); ` +
        `wait for it to finish or choose another --out (the lock is ${path})`,
      FOLDER_BUSY_EXIT_CODE,
    );
  }
  return got;
}
