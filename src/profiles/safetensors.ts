// The safetensors format (huggingface/safetensors): an 8-byte little-endian header length N, N bytes of JSON
// `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}`, then the raw
// little-endian tensor data, offsets counted from the first byte after the header.
import { readFile } from "node:fs/promises";
import os from "node:os";
import { writeFileAtomic } from "../base/files.js";

export type FloatDtype = "F32" | "F16" | "BF16";

export interface Tensor {
  /** The type it was stored in; the values are always widened to Float32Array. */
  dtype: FloatDtype;
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

export interface TensorToWrite {
  /** F32 by default; F16 and BF16 round to nearest even. */
  dtype?: FloatDtype;
  shape: number[];
  data: Float32Array;
}

/** Why a buffer is not a readable safetensors file; the caller adds the file name. */
export class SafetensorsFormatError extends Error {}

const BYTES: Record<FloatDtype, number> = { F32: 4, F16: 2, BF16: 2 };
// Every dtype the format defines, so that an integer tensor is reported as unsupported rather than as garbage.
const KNOWN_DTYPES = new Set(["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]);
// The reference implementation refuses headers over 100 MB; so do we, which also catches random bytes early.
const MAX_HEADER = 100_000_000;
const LITTLE_ENDIAN = os.endianness() === "LE";

function elementCount(shape: number[]): number {
  return shape.reduce((a, d) => a * d, 1);
}

function isDim(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** Parses a whole safetensors file held in memory; float tensors only (F32, F16, BF16). */
export function decodeSafetensors(buf: Buffer): SafetensorsFile {
  if (buf.length < 8) throw new SafetensorsFormatError(`not a safetensors file: it holds ${buf.length} bytes, fewer than the 8-byte header length`);
  const headerLength = buf.readBigUInt64LE(0);
  if (headerLength > BigInt(buf.length - 8)) {
    throw new SafetensorsFormatError(`not a safetensors file, or truncated: its header length (${headerLength} bytes) is more than the file holds (${buf.length} bytes)`);
  }
  const n = Number(headerLength);
  if (n < 2 || n > MAX_HEADER) throw new SafetensorsFormatError(`not a safetensors file: implausible header length ${n}`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(8, 8 + n)));
  } catch {
    throw new SafetensorsFormatError("not a safetensors file: its header is not JSON");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new SafetensorsFormatError("not a safetensors file: its header is not a JSON object");
  }
  const dataStart = 8 + n;
  const dataLength = buf.length - dataStart;
  const entries: { name: string; dtype: FloatDtype; shape: number[]; begin: number; end: number }[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) throw new SafetensorsFormatError("its __metadata__ is not an object");
      metadata = Object.fromEntries(Object.entries(entry).map(([k, v]) => [k, String(v)]));
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (typeof e !== "object" || e === null) throw new SafetensorsFormatError(`tensor ${name}: its header entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = e;
    if (typeof dtype !== "string" || !KNOWN_DTYPES.has(dtype)) throw new SafetensorsFormatError(`tensor ${name}: unknown dtype ${JSON.stringify(dtype)}`);
    if (!Array.isArray(shape) || !shape.every(isDim)) throw new SafetensorsFormatError(`tensor ${name}: bad shape ${JSON.stringify(shape)}`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isDim) || offsets[1] < offsets[0]) {
      throw new SafetensorsFormatError(`tensor ${name}: bad data_offsets ${JSON.stringify(offsets)}`);
    }
    if (!(dtype in BYTES)) throw new SafetensorsFormatError(`tensor ${name} is ${dtype}; only F32, F16 and BF16 tensors are supported`);
    const type = dtype as FloatDtype;
    const [begin, end] = offsets as [number, number];
    const dims = shape as number[];
    const expected = elementCount(dims) * BYTES[type];
    if (end - begin !== expected) {
      throw new SafetensorsFormatError(`tensor ${name}: ${type} [${dims.join(", ")}] needs ${expected} bytes, its offsets span ${end - begin}`);
    }
    entries.push({ name, dtype: type, shape: dims, begin, end });
  }
  const dataEnd = Math.max(0, ...entries.map((e) => e.end));
  if (dataEnd > dataLength) {
    throw new SafetensorsFormatError(`truncated: its header puts tensor data up to byte ${dataStart + dataEnd} but the file holds ${buf.length} bytes`);
  }
  const tensors = new Map<string, Tensor>();
  for (const e of entries) tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: toFloat32(buf.subarray(dataStart + e.begin, dataStart + e.end), e.dtype) });
  return { tensors, metadata };
}

function toFloat32(bytes: Buffer, dtype: FloatDtype): Float32Array {
  if (dtype === "F32") {
    const out = new Float32Array(bytes.length / 4);
    if (LITTLE_ENDIAN) new Uint8Array(out.buffer).set(bytes);
    else for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
    return out;
  }
  const out = new Float32Array(bytes.length / 2);
  for (let i = 0; i < out.length; i++) {
    const h = bytes.readUInt16LE(i * 2);
    out[i] = dtype === "F16" ? halfToFloat(h) : bfloat16ToFloat(h);
  }
  return out;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function bfloat16ToFloat(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export function floatToBfloat16(v: number): number {
  f32[0] = v;
  const x = u32[0];
  if (Number.isNaN(v)) return 0x7fc0;
  // Round to nearest, ties to even, on the 16 bits that are dropped.
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    // Subnormal half: shift the mantissa (with its implicit 1) into place, rounding to nearest even.
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let r = m >>> shift;
    if (rest > half || (rest === half && r & 1)) r++;
    return sign | r;
  }
  let r = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && r & 1)) r++; // may carry into the exponent, which is still correct
  return sign | r;
}

/** Encodes tensors (in the order given) as a safetensors file, the header padded with spaces to 8 bytes. */
export function encodeSafetensors(tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>, metadata?: Record<string, string>): Buffer {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === "__metadata__") throw new Error("a tensor cannot be named __metadata__");
    const dtype = t.dtype ?? "F32";
    if (elementCount(t.shape) !== t.data.length) throw new Error(`tensor ${name}: shape [${t.shape.join(", ")}] does not hold ${t.data.length} values`);
    const bytes = fromFloat32(t.data, dtype);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += " ".repeat(pad);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([head, Buffer.from(json, "utf8"), ...chunks]);
}

function fromFloat32(data: Float32Array, dtype: FloatDtype): Buffer {
  const out = Buffer.alloc(data.length * BYTES[dtype]);
  if (dtype === "F32") {
    if (LITTLE_ENDIAN) Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(out);
    else for (let i = 0; i < data.length; i++) out.writeFloatLE(data[i], i * 4);
  } else {
    const conv = dtype === "F16" ? floatToHalf : floatToBfloat16;
    for (let i = 0; i < data.length; i++) out.writeUInt16LE(conv(data[i]), i * 2);
  }
  return out;
}

/** Reads and parses a safetensors file; SafetensorsFormatError (without the file name) when it is not one. */
export async function readSafetensors(file: string): Promise<SafetensorsFile> {
  return decodeSafetensors(await readFile(file));
}

/** Writes a safetensors file atomically (a temporary file in the same folder, flushed, then renamed over it). */
export async function writeSafetensors(
  file: string,
  tensors: Record<string, TensorToWrite> | Map<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}
