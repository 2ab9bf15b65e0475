import { randomBytes } from "node:crypto";
import { mkdir, open, readdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { isProcessAlive } from "./process.js";

/** Writes `bytes` to `file` and syncs it to disk before returning. */
export async function writeFileSynced(file: string, bytes: Uint8Array | string): Promise<void> {
  const fh = await open(file, "w");
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** `.NAME.PID.RANDOM.tmp`: hidden, next to its target, and naming the process that writes it. */
const TEMP_NAME = /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/;

/** A fresh temporary name next to `target`, for a file or folder that is renamed onto it once complete. */
export function tempNameFor(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
}

/** Whether `name` (a file name, not a path) is one tempNameFor made; returns the writer's pid, else null. */
export function tempWriter(name: string): number | null {
  const m = TEMP_NAME.exec(name);
  return m ? Number(m[1]) : null;
}

/**
 * Writes `bytes` to `file` through a synced temporary file and a rename: a reader never sees half a file. The parent
 * folder is created when missing.
 */
export async function writeFileAtomic(file: string, bytes: Uint8Array | string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = tempNameFor(file);
  try {
    await writeFileSynced(tmp, bytes);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Deletes the temporary files under `dir` that killed processes left before their rename (those of live ones stay). */
export async function removeStaleTemps(dir: string): Promise<number> {
  let removed = 0;
  const visit = async (folder: string): Promise<void> => {
    const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      const p = path.join(folder, entry.name);
      if (entry.isDirectory()) {
        await visit(p);
        continue;
      }
      const pid = tempWriter(entry.name);
      if (pid === null || !entry.isFile() || isProcessAlive(pid)) continue;
      await rm(p, { force: true }).then(
        () => removed++,
        () => undefined,
      );
    }
  };
  await visit(dir);
  return removed;
}
