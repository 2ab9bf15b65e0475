// Writes an F32 copy of a GGUF model (Q8_0 and F16 tensors dequantized exactly), so that tests can run a quantized
// fixture model "in f32": llama.cpp then computes every matmul in f32 instead of quantizing activations to 8 bits,
// and two attention implementations that agree to float rounding give logits that agree to float rounding.
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { halfToFloat } from "../../src/profiles/safetensors.js";

const GGML_F32 = 0;
const GGML_F16 = 1;
const GGML_Q8_0 = 8;

class Reader {
  off = 0;
  constructor(readonly buf: Buffer) {}
  u32() {
    const v = this.buf.readUInt32LE(this.off);
    this.off += 4;
    return v;
  }
  u64() {
    const v = Number(this.buf.readBigUInt64LE(this.off));
    this.off += 8;
    return v;
  }
  str() {
    const n = this.u64();
    const s = this.buf.toString("utf8", this.off, this.off + n);
    this.off += n;
    return s;
  }
  skipValue(type: number): void {
    const sizes: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
    if (type === 8) {
      this.str();
      return;
    }
    if (type === 9) {
      const t = this.u32();
      const n = this.u64();
      if (t in sizes) this.off += sizes[t] * n;
      else for (let i = 0; i < n; i++) this.skipValue(t);
      return;
    }
    if (!(type in sizes)) throw new Error(`unknown GGUF value type ${type}`);
    this.off += sizes[type];
  }
}

export function dequantizedCopy(src: string): string {
  const st = statSync(src);
  const out = path.join(os.tmpdir(), `kvzap-f32-${path.basename(src, ".gguf")}-${st.size}-${Math.floor(st.mtimeMs)}.gguf`);
  if (existsSync(out)) return out;
  const buf = readFileSync(src);
  const r = new Reader(buf);
  if (buf.toString("latin1", 0, 4) !== "GGUF") throw new Error(`not GGUF: ${src}`);
  r.off = 8;
  const nTensors = r.u64();
  const nKv = r.u64();
  let alignment = 32;
  for (let i = 0; i < nKv; i++) {
    const key = r.str();
    const type = r.u32();
    if (key === "general.alignment" && type === 4) alignment = buf.readUInt32LE(r.off);
    r.skipValue(type);
  }
  const kvEnd = r.off;
  const tensors: { name: string; dims: number[]; type: number; offset: number }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = r.str();
    const nd = r.u32();
    const dims = Array.from({ length: nd }, () => r.u64());
    tensors.push({ name, dims, type: r.u32(), offset: r.u64() });
  }
  const dataStart = Math.ceil(r.off / alignment) * alignment;

  // new tensor infos (all F32) and data
  const parts: Buffer[] = [buf.subarray(0, kvEnd)];
  let dataOff = 0;
  const datas: Buffer[] = [];
  for (const t of tensors) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    const f = new Float32Array(n);
    const at = dataStart + t.offset;
    if (t.type === GGML_F32) f.set(new Float32Array(buf.buffer.slice(buf.byteOffset + at, buf.byteOffset + at + 4 * n)));
    else if (t.type === GGML_F16) for (let i = 0; i < n; i++) f[i] = halfToFloat(buf.readUInt16LE(at + 2 * i));
    else if (t.type === GGML_Q8_0) {
      for (let b = 0; b < n / 32; b++) {
        const base = at + b * 34;
        const d = halfToFloat(buf.readUInt16LE(base));
        for (let j = 0; j < 32; j++) f[b * 32 + j] = d * buf.readInt8(base + 2 + j);
      }
    } else throw new Error(`dequantize: tensor ${t.name} has type ${t.type}`);
    const name = Buffer.from(t.name, "utf8");
    const info = Buffer.alloc(8 + name.length + 4 + 8 * t.dims.length + 4 + 8);
    let o = info.writeBigUInt64LE(BigInt(name.length), 0);
    o += name.copy(info, o);
    o = info.writeUInt32LE(t.dims.length, o);
    for (const d of t.dims) o = info.writeBigUInt64LE(BigInt(d), o);
    o = info.writeUInt32LE(GGML_F32, o);
    info.writeBigUInt64LE(BigInt(dataOff), o);
    parts.push(info);
    const bytes = Buffer.from(f.buffer);
    const padded = Math.ceil(bytes.length / alignment) * alignment;
    datas.push(bytes, Buffer.alloc(padded - bytes.length));
    dataOff += padded;
  }
  const head = Buffer.concat(parts);
  const pad = Buffer.alloc(Math.ceil(head.length / alignment) * alignment - head.length);
  // general.file_type stays as it was: llama.cpp reads each tensor's own type.
  const tmp = `${out}.${process.pid}.tmp`;
  writeFileSync(tmp, Buffer.concat([head, pad, ...datas]));
  renameSync(tmp, out);
  return out;
}
