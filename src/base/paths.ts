import path from "node:path";
import { fileURLToPath } from "node:url";

/** The checkout or installed package: this file is src/base/paths.ts, or dist/base/paths.js once built. */
export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The corpora every checkout has next to it (../shared/corpora). */
export const sharedCorporaDir = path.resolve(projectRoot, "..", "shared", "corpora");
