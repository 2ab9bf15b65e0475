// resolve.ts loads private files of node-llama-cpp's dist/ (its hub resolution and URI parsing are not exported).
// These tests fail when an upgrade moves them, before a user meets a broken `hf:` download.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { projectRoot } from "../base/paths.js";
import { loadNodeLlamaCppInternals } from "./resolve.js";

describe("node-llama-cpp's private API", () => {
  it("is pinned to one exact version, the one installed", () => {
    const pkg = JSON.parse(readFileSync(path.join(projectRoot, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    const wanted = pkg.dependencies["node-llama-cpp"];
    expect(wanted).toMatch(/^\d+\.\d+\.\d+$/);
    const entry = createRequire(import.meta.url).resolve("node-llama-cpp");
    let dir = path.dirname(entry);
    while (!readFileSafe(path.join(dir, "package.json"))?.includes('"name": "node-llama-cpp"')) dir = path.dirname(dir);
    const installed = (JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8")) as { version: string }).version;
    expect(installed).toBe(wanted);
  });

  it("still has the files and functions resolve.ts loads, and they parse an hf: URI", async () => {
    const nlc = await loadNodeLlamaCppInternals();
    for (const fn of Object.values(nlc)) expect(typeof fn).toBe("function");
    const d = nlc.resolveModelDestination("hf:user/repo:Q4_K_M", false, undefined);
    expect(d.type).toBe("uri");
    expect(nlc.resolveSplitGgufParts("model-00001-of-00003.gguf")).toEqual([
      "model-00001-of-00003.gguf",
      "model-00002-of-00003.gguf",
      "model-00003-of-00003.gguf",
    ]);
  });
});

function readFileSafe(file: string): string | null {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return null;
  }
}
