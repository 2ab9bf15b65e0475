// The one rule for writing a profile folder (calibrate --out, profile import --out): an existing profile is replaced
// only with --force, anything else that is there is never touched, and one process at a time writes a folder.
import { mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { UserError } from "../base/errors.js";
import { isProcessAlive } from "../base/process.js";
import { MANIFEST_FILE } from "./manifest.js";

export interface ProfileClaim {
  /** Lets the next writer in. */
  release(): Promise<void>;
}

/**
 * Checks that `dir` may be written (absent, empty, or a profile and `force`) and takes its lock, `DIR.lock` next to
 * it, holding this process's id. A lock whose process has died is taken over; a live one is refused, naming it.
 */
export async function claimProfileDir(dir: string, opts: { force: boolean; flag?: string }): Promise<ProfileClaim> {
  const target = path.resolve(dir);
  const flag = opts.flag ?? "--out";
  const st = await stat(target).catch(() => null);
  if (st) {
    if (!st.isDirectory()) throw new UserError(`${dir} exists and is not a folder; choose another ${flag}`);
    const names = await readdir(target);
    if (names.length > 0) {
      if (!names.includes(MANIFEST_FILE)) throw new UserError(`${dir} exists and is not a kvzap profile folder; choose another ${flag} or empty it`);
      if (!opts.force) throw new UserError(`${dir} already exists (a profile); pass --force to replace it, or choose another ${flag}`);
    }
  }
  const lock = `${target}.lock`;
  await mkdir(path.dirname(lock), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(lock, String(process.pid), { flag: "wx" });
      return { release: () => rm(lock, { force: true }) };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw new UserError(`cannot lock ${dir}: ${(e as Error).message}`);
    }
    const owner = Number((await readFile(lock, "utf8").catch(() => "")).trim());
    if (isProcessAlive(owner) && owner !== process.pid) throw new UserError(`${dir} is being written by another kvzap (pid ${owner}); wait for it to finish`);
    await rm(lock, { force: true });
  }
  throw new UserError(`cannot lock ${dir}: ${lock} keeps coming back`);
}
