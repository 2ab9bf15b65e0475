import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { removeStaleTemps, tempNameFor, tempWriter, writeFileAtomic } from "./files.js";
import { isProcessAlive } from "./process.js";

/** A pid that existed and is gone: a child that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  return Number(r.stdout);
}

describe("writeFileAtomic", () => {
  it("creates the parent folder, replaces the file whole and leaves no temporary file", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "kvzap-files-"));
    const target = path.join(dir, "a", "b.txt");
    await writeFileAtomic(target, "first\n");
    await writeFileAtomic(target, new TextEncoder().encode("second\n"));
    expect(readFileSync(target, "utf8")).toBe("second\n");
    expect(readdirSync(path.dirname(target))).toEqual(["b.txt"]);
  });

  it("names its temporary files after the writer, and only those count as temporary", () => {
    const name = path.basename(tempNameFor("/x/report.jsonl"));
    expect(tempWriter(name)).toBe(process.pid);
    expect(tempWriter("report.jsonl")).toBeNull();
    expect(tempWriter("notes.tmp")).toBeNull();
  });
});

describe("removeStaleTemps", () => {
  it("removes the temporary files of dead writers and keeps those of live ones and everything else", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "kvzap-files-"));
    const dead = deadPid();
    writeFileSync(path.join(dir, `.out.md.${dead}.0123abcd.tmp`), "half");
    writeFileSync(path.join(dir, `.mine.md.${process.pid}.0123abcd.tmp`), "in progress");
    writeFileSync(path.join(dir, "kept.md"), "done");
    expect(await removeStaleTemps(dir)).toBe(1);
    expect(readdirSync(dir).sort()).toEqual([`.mine.md.${process.pid}.0123abcd.tmp`, "kept.md"]);
  });
});

describe("isProcessAlive", () => {
  it("tells a running process from one that has exited", () => {
    expect(isProcessAlive(process.pid)).toBe(true);
    expect(isProcessAlive(process.ppid)).toBe(true);
    expect(isProcessAlive(deadPid())).toBe(false);
    expect(isProcessAlive(0)).toBe(false);
  });
});
