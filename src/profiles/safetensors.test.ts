import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  SafetensorsFormatError,
  bfloat16ToFloat,
  decodeSafetensors,
  encodeSafetensors,
  floatToBfloat16,
  floatToHalf,
  halfToFloat,
  readSafetensors,
  writeSafetensors,
} from "./safetensors.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kvzap-st-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe("safetensors", () => {
  it("round-trips F32 tensors exactly, with metadata, through a file", async () => {
    const a = new Float32Array([1.5, -2.25, 3.1415927, 1e-30, -0, 65504.5]);
    const b = new Float32Array(Array.from({ length: 12 }, (_, i) => Math.fround(Math.sin(i) * 1e3)));
    const file = path.join(tmp, "a.safetensors");
    await writeSafetensors(file, { "x.weight": { shape: [2, 3], data: a }, "y.bias": { shape: [12], data: b } }, { format: "pt" });
    const r = await readSafetensors(file);
    expect(r.metadata).toEqual({ format: "pt" });
    expect([...r.tensors.keys()]).toEqual(["x.weight", "y.bias"]);
    expect(r.tensors.get("x.weight")!.shape).toEqual([2, 3]);
    expect(r.tensors.get("x.weight")!.dtype).toBe("F32");
    expect(Array.from(r.tensors.get("x.weight")!.data)).toEqual(Array.from(a));
    expect(Object.is(r.tensors.get("x.weight")!.data[4], -0)).toBe(true);
    expect(r.tensors.get("y.bias")!.data).toEqual(b);
    expect(fs.readdirSync(tmp).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  it("writes the layout the format specifies: u64 LE header length, JSON header padded to 8, data after it", () => {
    const buf = encodeSafetensors({ t: { shape: [2], data: new Float32Array([1, 2]) } });
    const n = Number(buf.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
    expect(header).toEqual({ t: { dtype: "F32", shape: [2], data_offsets: [0, 8] } });
    expect(buf.readFloatLE(8 + n)).toBe(1);
    expect(buf.readFloatLE(8 + n + 4)).toBe(2);
    expect(buf.length).toBe(8 + n + 8);
  });

  it("reads F16 and BF16 (as a PyTorch checkpoint stores them) into Float32Array", () => {
    // Hand-built F16 bytes: 1.0 = 0x3c00, -2.0 = 0xc000, 0.5 = 0x3800, 65504 = 0x7bff, smallest subnormal = 0x0001.
    const halves = [0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000];
    const data = Buffer.alloc(halves.length * 2);
    halves.forEach((h, i) => data.writeUInt16LE(h, i * 2));
    const header = Buffer.from(JSON.stringify({ h: { dtype: "F16", shape: [2, 3], data_offsets: [0, data.length] } }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const t = decodeSafetensors(Buffer.concat([len, header, data])).tensors.get("h")!;
    expect(t.dtype).toBe("F16");
    expect(t.data).toBeInstanceOf(Float32Array);
    expect(Array.from(t.data)).toEqual([1, -2, 0.5, 65504, 2 ** -24, -0]);

    const values = new Float32Array([0.1, -3.75, 1234.5, 1e-3, 0, 7]);
    const f16 = decodeSafetensors(encodeSafetensors({ v: { dtype: "F16", shape: [6], data: values } })).tensors.get("v")!;
    const bf16 = decodeSafetensors(encodeSafetensors({ v: { dtype: "BF16", shape: [6], data: values } })).tensors.get("v")!;
    expect(f16.dtype).toBe("F16");
    expect(bf16.dtype).toBe("BF16");
    for (let i = 0; i < values.length; i++) {
      expect(Math.abs(f16.data[i] - values[i])).toBeLessThanOrEqual(Math.abs(values[i]) * 2 ** -11);
      expect(Math.abs(bf16.data[i] - values[i])).toBeLessThanOrEqual(Math.abs(values[i]) * 2 ** -8);
    }
    // Values exact in the narrow type come back exactly.
    expect(Array.from(decodeSafetensors(encodeSafetensors({ v: { dtype: "F16", shape: [3], data: new Float32Array([-3.75, 7, 0.5]) } })).tensors.get("v")!.data)).toEqual([-3.75, 7, 0.5]);
  });

  it("converts halves exactly and rounds to nearest even", () => {
    const wrong: number[] = [];
    for (let h = 0; h < 0x10000; h++) {
      const v = halfToFloat(h);
      if (!Number.isNaN(v) && floatToHalf(v) !== h) wrong.push(h);
    }
    expect(wrong).toEqual([]);
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // tie → even
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(floatToHalf(1e6)).toBe(0x7c00);
    expect(Number.isNaN(halfToFloat(floatToHalf(NaN)))).toBe(true);
    expect(bfloat16ToFloat(floatToBfloat16(1.5))).toBe(1.5);
    expect(bfloat16ToFloat(0x3f80)).toBe(1);
  });

  it("rejects random bytes, a truncated file and inconsistent entries with a reason", () => {
    const good = encodeSafetensors({ t: { shape: [4, 4], data: new Float32Array(16).fill(1) } });
    const err = (b: Buffer) => {
      try {
        decodeSafetensors(b);
      } catch (e) {
        expect(e).toBeInstanceOf(SafetensorsFormatError);
        return (e as Error).message;
      }
      throw new Error("no error");
    };
    expect(err(Buffer.from([1, 2, 3]))).toMatch(/fewer than the 8-byte header/);
    const random = Buffer.alloc(4096);
    for (let i = 0; i < random.length; i++) random[i] = (i * 2654435761) >>> 24;
    expect(err(random)).toMatch(/not a safetensors file/);
    expect(err(good.subarray(0, good.length - 10))).toMatch(/truncated: its header puts tensor data up to byte \d+ but the file holds \d+ bytes/);
    expect(err(good.subarray(0, 20))).toMatch(/header length .* more than the file holds/);
    const notJson = Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("{nonsense")]);
    expect(err(notJson)).toMatch(/header is not JSON/);
    const mk = (h: unknown, extra = 0) => {
      const j = Buffer.from(JSON.stringify(h));
      const l = Buffer.alloc(8);
      l.writeBigUInt64LE(BigInt(j.length));
      return Buffer.concat([l, j, Buffer.alloc(extra)]);
    };
    expect(err(mk({ t: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }, 8))).toMatch(/needs 8 bytes, its offsets span 4/);
    expect(err(mk({ t: { dtype: "I64", shape: [1], data_offsets: [0, 8] } }, 8))).toMatch(/I64; only F32, F16 and BF16/);
    expect(err(mk({ t: { dtype: "F99", shape: [1], data_offsets: [0, 4] } }, 4))).toMatch(/unknown dtype/);
    expect(err(mk([1, 2]))).toMatch(/not a JSON object/);
  });
});
