import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

// The native checks that `npm install` builds next to the addon (native/CMakeLists.txt: kvzap-native-check).
const binary = path.resolve(import.meta.dirname, "..", "build", "Release", "kvzap-native-check");

describe("the KV pool's row moves (native checks)", () => {
  it("resolve to independent moves that leave every slot as the moves one by one do, on the host pool too", () => {
    expect(existsSync(binary), `${binary} is built by npm install`).toBe(true);
    const r = spawnSync(binary, { encoding: "utf8" });
    const lines = r.stdout.trim().split("\n");
    const failed = lines.filter((l) => l.startsWith("FAIL"));
    expect(failed, r.stdout + r.stderr).toEqual([]);
    expect(r.status).toBe(0);
    // every check ran: the move log's (removals, block moves, arbitrary sequences, far-apart slots) and the pool's
    expect(lines.filter((l) => l.startsWith("PASS")).length).toBeGreaterThanOrEqual(58);
    expect(lines.some((l) => /^PASS: host pool: \d+ row moves applied by flush, 0 words differ/.test(l))).toBe(true);
    expect(lines.some((l) => /overlap: gathered/.test(l)) && lines.some((l) => /\(straight\)/.test(l))).toBe(true);
  });
});
