import { readFileSync } from "node:fs";
import path from "node:path";
import { projectRoot } from "./paths.js";

/** kvzap's version, as package.json gives it (the one source of it). */
export const VERSION: string = (JSON.parse(readFileSync(path.join(projectRoot, "package.json"), "utf8")) as { version: string }).version;
