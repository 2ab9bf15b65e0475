import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";

/** Writes `bytes` to `file` and syncs it to disk before returning. */
export async function writeFileSynced(file: string, bytes: Uint8Array): Promise<void> {
  const fh = await open(file, "w");
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes `bytes` to `file` through a synced temporary file and a rename: a reader never sees half a file. */
export async function writeFileAtomic(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await writeFileSynced(tmp, bytes);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
