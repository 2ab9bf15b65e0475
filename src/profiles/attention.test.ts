// Which models KVzap can run, from GGUF headers alone: every layer with attention, or one clear message.
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { models } from "../../test/helpers/cli.js";
import { gguf, writeGguf, type GgufValue } from "../../test/helpers/gguf-writer.js";
import { readGgufHeader, modelShape } from "../engine/gguf.js";
import { requireKvzapSupport } from "./attention.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-attention-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A header-only GGUF (no tensors): all that the checks read. */
async function header(name: string, arch: string, values: Record<string, GgufValue>): Promise<string> {
  const file = path.join(dir, `${name}.gguf`);
  const meta: Record<string, GgufValue> = { "general.architecture": gguf.str(arch), [`${arch}.block_count`]: gguf.u32(8), [`${arch}.embedding_length`]: gguf.u32(256) };
  for (const [k, v] of Object.entries(values)) meta[`${arch}.${k}`] = v;
  await writeGguf(file, meta, []);
  return file;
}

async function shapeOf(file: string) {
  return modelShape((await readGgufHeader(file)).info, file);
}

describe("KVzap support from the GGUF header", () => {
  it("a transformer: every layer has attention", async () => {
    const shape = await requireKvzapSupport(models.stories, "calibrate");
    expect(shape).toMatchObject({ layers: 5, attentionLayers: 5, heads: 8, kvHeads: 4 });
    await expect(requireKvzapSupport(models.testbed, "kvzap")).resolves.toMatchObject({ layers: 8, attentionLayers: 8 });
  });

  it("no attention.head_count at all (an RWKV-style header): no attention layers", async () => {
    const file = await header("no-heads", "rwkv6", {});
    expect(await shapeOf(file)).toMatchObject({ heads: 0, kvHeads: 0, headDim: 0, attentionLayers: 0 });
    await expect(requireKvzapSupport(file, "calibrate")).rejects.toThrow(
      `${file} is a 'rwkv6' model with no attention layers: KVzap scores the key/value pairs of attention layers, so it cannot be calibrated`,
    );
    await expect(requireKvzapSupport(file, "window")).rejects.toThrow(/the window policy drops key\/value pairs of attention layers, so --kv window cannot run it; use --kv full$/);
  });

  it("a hybrid with per-layer KV head counts, 0 for its recurrent layers (Jamba-style)", async () => {
    const file = await header("jamba", "jamba", { "attention.head_count": gguf.u32(8), "attention.head_count_kv": gguf.i32s([0, 0, 0, 2, 0, 0, 0, 2]) });
    // the first layer with attention gives the head counts
    expect(await shapeOf(file)).toMatchObject({ layers: 8, heads: 8, kvHeads: 2, attentionLayers: 2 });
    await expect(requireKvzapSupport(file, "kvzap")).rejects.toThrow(
      `${file} is a hybrid 'jamba' model: 6 of its 8 layers have no attention, and KVzap needs attention in every layer, so --kv kvzap cannot run it; use --kv full`,
    );
    await expect(requireKvzapSupport(file, "calibrate")).rejects.toThrow(/6 of its 8 layers have no attention.*so it cannot be calibrated$/);
  });

  it("a hybrid that gives the interval between full-attention layers (Qwen3-Next-style)", async () => {
    const file = await header("interval", "qwen3next", { "attention.head_count": gguf.u32(16), "attention.head_count_kv": gguf.u32(2), full_attention_interval: gguf.u32(4) });
    expect(await shapeOf(file)).toMatchObject({ kvHeads: 2, attentionLayers: 2 });
    await expect(requireKvzapSupport(file, "calibrate")).rejects.toThrow(/hybrid 'qwen3next' model: 6 of its 8 layers have no attention/);
  });
});
