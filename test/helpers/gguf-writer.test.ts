// The test GGUF writer: what it writes reads back through node-llama-cpp's GGUF reader, values, tensor infos,
// alignment and bytes included; the Mamba fixture has the shape llama.cpp's mamba loader asks for.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { models } from "./cli.js";
import { GGUF_ALIGNMENT, MAMBA_FIXTURE, encodeGguf, gguf, writeGguf, writeMambaModel } from "./gguf-writer.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-gguf-writer-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("GGUF writer", () => {
  it("writes metadata of every supported type and F32 tensors that read back as written", async () => {
    const file = path.join(dir, "all-types.gguf");
    const a = Float32Array.from({ length: 3 * 5 }, (_, i) => i - 7.5);
    const b = Float32Array.from([Math.PI]);
    await writeGguf(
      file,
      {
        "general.architecture": gguf.str("llama"),
        "test.u32": gguf.u32(4_000_000_000),
        "test.i32": gguf.i32(-123),
        "test.f32": gguf.f32(0.5),
        "test.yes": gguf.bool(true),
        "test.no": gguf.bool(false),
        "test.unicode": gguf.str("τ ≥ −4 ✓"),
        "test.strs": gguf.strs(["a", "", "ünï"]),
        "test.f32s": gguf.f32s([1.5, -2.25]),
        "test.i32s": gguf.i32s([-1, 0, 2147483647]),
      },
      [
        { name: "a.weight", dims: [3, 5], data: a },
        { name: "b", dims: [1], data: b },
      ],
    );
    const info = await readGgufFileInfo(file, { logWarnings: false });
    expect(info.version).toBe(3);
    expect(Number(info.tensorCount)).toBe(2);
    const t = info.metadata as unknown as { test: Record<string, unknown> };
    expect(t.test).toEqual({
      u32: 4_000_000_000,
      i32: -123,
      f32: 0.5,
      yes: true,
      no: false,
      unicode: "τ ≥ −4 ✓",
      strs: ["a", "", "ünï"],
      f32s: [1.5, -2.25],
      i32s: [-1, 0, 2147483647],
    });
    expect(info.tensorInfo?.map((x) => ({ name: x.name, dims: x.dimensions.map(Number), type: x.ggmlType }))).toEqual([
      { name: "a.weight", dims: [3, 5], type: 0 },
      { name: "b", dims: [1], type: 0 },
    ]);
    // the data section and every tensor in it start on the alignment; the bytes are the values, little-endian F32
    const bytes = await readFile(file);
    for (const [x, want] of [
      [info.tensorInfo![0], a],
      [info.tensorInfo![1], b],
    ] as const) {
      const at = Number(x.fileOffset);
      expect(at % GGUF_ALIGNMENT).toBe(0);
      expect(new Float32Array(bytes.buffer.slice(bytes.byteOffset + at, bytes.byteOffset + at + want.length * 4))).toEqual(want);
    }
    expect(bytes.length % GGUF_ALIGNMENT).toBe(0);
  });

  it("refuses tensors whose dims do not match their data", () => {
    expect(() => encodeGguf({}, [{ name: "x", dims: [2, 2], data: new Float32Array(3) }])).toThrow(/do not match 3 values/);
    expect(() =>
      encodeGguf({}, [
        { name: "x", dims: [1], data: new Float32Array(1) },
        { name: "x", dims: [1], data: new Float32Array(1) },
      ]),
    ).toThrow(/duplicate/);
  });

  it("the Mamba fixture: mamba metadata, the stories260K tokenizer and the tensors llama.cpp's mamba loader asks for", async () => {
    const file = path.join(dir, "mamba.gguf");
    await writeMambaModel(file);
    const info = await readGgufFileInfo(file, { logWarnings: false });
    const stories = await readGgufFileInfo(models.stories, { logWarnings: false });
    const m = MAMBA_FIXTURE;
    expect(info.metadata.general).toMatchObject({ architecture: "mamba" });
    expect(info.architectureMetadata).toMatchObject({
      context_length: m.contextLength,
      embedding_length: m.embeddingSize,
      block_count: m.layers,
      ssm: { conv_kernel: m.convKernel, inner_size: m.innerSize, state_size: m.stateSize, time_step_rank: m.timeStepRank, dt_b_c_rms: false },
      attention: { head_count: 0 },
    });
    const tok = info.metadata.tokenizer?.ggml as Record<string, unknown>;
    const want = stories.metadata.tokenizer?.ggml as Record<string, unknown>;
    for (const k of ["model", "tokens", "scores", "token_type", "bos_token_id", "eos_token_id", "unknown_token_id"]) expect(tok[k]).toEqual(want[k]);
    const shapes = Object.fromEntries((info.tensorInfo ?? []).map((t) => [t.name, t.dimensions.map(Number)]));
    const vocab = (want.tokens as string[]).length;
    expect(shapes["token_embd.weight"]).toEqual([m.embeddingSize, vocab]);
    expect(shapes["blk.1.ssm_in.weight"]).toEqual([m.embeddingSize, 2 * m.innerSize]);
    expect(shapes["blk.1.ssm_x.weight"]).toEqual([m.innerSize, m.timeStepRank + 2 * m.stateSize]);
    expect(shapes["blk.1.ssm_a"]).toEqual([m.stateSize, m.innerSize]);
    expect(Object.keys(shapes)).toHaveLength(2 + 10 * m.layers);
    // the same seed writes the same file
    const again = path.join(dir, "mamba-again.gguf");
    await writeMambaModel(again);
    expect((await readFile(again)).equals(await readFile(file))).toBe(true);
  });
});
