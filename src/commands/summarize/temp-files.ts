// Temp files that a killed run left before its rename (the atomic write's, and those of older versions).
import { readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { isProcessAlive } from "../../util/lock-file.js";

/** `NAME.tmp-PID-RANDOM` (src/util/atomic-write.ts) and `.NAME.PID.RANDOM.tmp` (earlier versions). */
const TEMP_NAMES = [/^.+\.tmp-(\d+)-[0-9a-f]{8}$/, /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/];

/** Deletes temp files that runs killed before their rename left behind (those of live processes stay). */
export async function removeStaleTemps(dir: string): Promise<number> {
  let removed = 0;
  const visit = async (folder: string): Promise<void> => {
    let entries;
    try {
      entries = await readdir(folder, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const p = join(folder, entry.name);
      if (entry.isDirectory()) {
        await visit(p);
        continue;
      }
      const pid = TEMP_NAMES.map((re) => re.exec(entry.name)).find((m) => m !== null)?.[1];
      if (pid === undefined || !entry.isFile() || isProcessAlive(Number(pid))) continue;
      await unlink(p).then(
        () => removed++,
        () => undefined,
      );
    }
  };
  await visit(dir);
  return removed;
}
