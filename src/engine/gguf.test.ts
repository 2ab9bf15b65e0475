// The GGUF header reader: one parse per file while it is unchanged, a fresh one once it changes.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { models } from "../../test/helpers/cli.js";
import { readGgufHeader } from "./gguf.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kvzap-gguf-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("readGgufHeader", () => {
  it("parses a file once while it is unchanged, again when it changes, and never keeps a failure", async () => {
    const file = path.join(tmp, "m.gguf");
    fs.copyFileSync(models.stories, file);
    const a = await readGgufHeader(file);
    expect(await readGgufHeader(file)).toBe(a);
    expect(a.info.metadata.general.architecture).toBe("llama");
    // another file in its place: its own header
    fs.copyFileSync(models.testbed, file);
    const b = await readGgufHeader(file);
    expect(b).not.toBe(a);
    expect(b.size).toBe(fs.statSync(models.testbed).size);
    // cut inside the metadata: an error, and a repaired file reads again
    fs.truncateSync(file, 2000);
    await expect(readGgufHeader(file)).rejects.toThrow(/truncated or corrupted/);
    fs.copyFileSync(models.stories, file);
    expect((await readGgufHeader(file)).size).toBe(fs.statSync(models.stories).size);
  });
});
