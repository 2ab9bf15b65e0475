// A model given as a local path: `~` expanded, made absolute, and checked to be a regular file.
import { stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { UserError, errorMessage } from "../../base/errors.js";

export async function resolveLocalModel(spec: string): Promise<string> {
  const expanded = spec === "~" ? os.homedir() : spec.startsWith("~/") ? path.join(os.homedir(), spec.slice(2)) : spec;
  const filePath = path.resolve(expanded);
  let info;
  try {
    info = await stat(filePath);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") throw new UserError(`model file not found: ${filePath}`);
    if (code === "EACCES" || code === "EPERM") throw new UserError(`cannot read model file ${filePath}: permission denied`);
    throw new UserError(`cannot read model file ${filePath}: ${errorMessage(e)}`);
  }
  if (info.isDirectory()) throw new UserError(`model path is a directory: ${filePath}`);
  if (!info.isFile()) throw new UserError(`model path is not a regular file: ${filePath}`);
  return filePath;
}

export async function isFile(filePath: string): Promise<boolean> {
  try {
    return (await stat(filePath)).isFile();
  } catch {
    return false;
  }
}

export async function fileSize(filePath: string): Promise<number> {
  try {
    return (await stat(filePath)).size;
  } catch {
    return 0;
  }
}
