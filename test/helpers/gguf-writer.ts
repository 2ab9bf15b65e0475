// A minimal GGUF v3 writer for test fixtures, written from the GGUF spec (ggml/docs/gguf.md): little-endian; a header
// ("GGUF", version, tensor count, metadata count), the metadata key/values, the tensor infos, then the tensor data,
// which starts at the next multiple of the alignment and in which every tensor starts at such a multiple too.
// Only what the fixtures need: scalar uint32/int32/float32/bool/string values, arrays of string/float32/int32, and
// F32 tensors. And writeMambaModel: a tiny, loadable llama.cpp `mamba` model (no attention layers at all).
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { readGgufFileInfo } from "node-llama-cpp";
import { rng } from "../../src/calibrate/rng.js";

const GGUF_VERSION = 3;
/** The spec's default alignment (`general.alignment` absent). */
export const GGUF_ALIGNMENT = 32;
const GGML_TYPE_F32 = 0;
/** GGML_MAX_NAME is 64 bytes including the terminating zero. */
const MAX_TENSOR_NAME_BYTES = 63;
const MAX_DIMS = 4;

const enum ValueType {
  Uint32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
}

export type GgufValue =
  | { type: "uint32"; value: number }
  | { type: "int32"; value: number }
  | { type: "float32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "string[]"; value: readonly string[] }
  | { type: "float32[]"; value: ArrayLike<number> }
  | { type: "int32[]"; value: ArrayLike<number> };

export const gguf = {
  u32: (value: number): GgufValue => ({ type: "uint32", value }),
  i32: (value: number): GgufValue => ({ type: "int32", value }),
  f32: (value: number): GgufValue => ({ type: "float32", value }),
  bool: (value: boolean): GgufValue => ({ type: "bool", value }),
  str: (value: string): GgufValue => ({ type: "string", value }),
  strs: (value: readonly string[]): GgufValue => ({ type: "string[]", value }),
  f32s: (value: ArrayLike<number>): GgufValue => ({ type: "float32[]", value }),
  i32s: (value: ArrayLike<number>): GgufValue => ({ type: "int32[]", value }),
};

export interface GgufTensor {
  name: string;
  /** ggml order: ne0 (the contiguous dimension) first. */
  dims: readonly number[];
  data: Float32Array;
}

/** Appends little-endian values to a list of chunks. */
class ByteWriter {
  private readonly chunks: Buffer[] = [];
  length = 0;

  private push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }

  u32(v: number): void {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`not a uint32: ${v}`);
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }

  i32(v: number): void {
    if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) throw new RangeError(`not an int32: ${v}`);
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }

  u64(v: number | bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }

  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }

  bool(v: boolean): void {
    this.push(Buffer.from([v ? 1 : 0]));
  }

  /** gguf_string_t: a uint64 byte length, then UTF-8 bytes without a terminating zero. */
  str(s: string): void {
    const bytes = Buffer.from(s, "utf8");
    this.u64(bytes.length);
    this.push(bytes);
  }

  bytes(b: Buffer): void {
    this.push(b);
  }

  padTo(alignment: number): void {
    const pad = (alignment - (this.length % alignment)) % alignment;
    if (pad > 0) this.push(Buffer.alloc(pad));
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

// How each scalar type is tagged and written; arrays are their element type's writer over the values.
const SCALARS = {
  uint32: [ValueType.Uint32, (w: ByteWriter, x: number) => w.u32(x)],
  int32: [ValueType.Int32, (w: ByteWriter, x: number) => w.i32(x)],
  float32: [ValueType.Float32, (w: ByteWriter, x: number) => w.f32(x)],
  bool: [ValueType.Bool, (w: ByteWriter, x: boolean) => w.bool(x)],
  string: [ValueType.String, (w: ByteWriter, x: string) => w.str(x)],
} as const;

function writeValue(w: ByteWriter, v: GgufValue): void {
  const array = v.type.endsWith("[]");
  const [tag, writer] = SCALARS[(array ? v.type.slice(0, -2) : v.type) as keyof typeof SCALARS];
  const write = writer as (w: ByteWriter, x: unknown) => void;
  if (!array) {
    w.u32(tag);
    return write(w, v.value);
  }
  const values = v.value as readonly unknown[];
  w.u32(ValueType.Array);
  w.u32(tag);
  w.u64(values.length);
  for (const x of values) write(w, x);
}

/** The bytes of a GGUF v3 file with these metadata (in insertion order) and F32 tensors (in this order). */
export function encodeGguf(metadata: Record<string, GgufValue>, tensors: readonly GgufTensor[]): Buffer {
  const names = new Set<string>();
  for (const t of tensors) {
    if (names.has(t.name)) throw new Error(`duplicate tensor name: ${t.name}`);
    names.add(t.name);
    if (Buffer.byteLength(t.name, "utf8") > MAX_TENSOR_NAME_BYTES) throw new Error(`tensor name longer than ${MAX_TENSOR_NAME_BYTES} bytes: ${t.name}`);
    if (t.dims.length < 1 || t.dims.length > MAX_DIMS) throw new Error(`${t.name}: ${t.dims.length} dimensions, GGUF allows 1 to ${MAX_DIMS}`);
    const elements = t.dims.reduce((a, d) => a * d, 1);
    if (t.dims.some((d) => !Number.isInteger(d) || d < 1) || elements !== t.data.length) {
      throw new Error(`${t.name}: dims [${t.dims.join(", ")}] do not match ${t.data.length} values`);
    }
  }
  const w = new ByteWriter();
  w.bytes(Buffer.from("GGUF", "latin1"));
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  const entries = Object.entries(metadata);
  w.u64(entries.length);
  for (const [key, value] of entries) {
    w.str(key);
    writeValue(w, value);
  }
  // Offsets are relative to the start of the data section; each tensor starts at a multiple of the alignment.
  let offset = 0;
  for (const t of tensors) {
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(GGML_TYPE_F32);
    w.u64(offset);
    offset += Math.ceil((t.data.length * 4) / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
  }
  w.padTo(GGUF_ALIGNMENT);
  for (const t of tensors) {
    const bytes = Buffer.alloc(t.data.length * 4);
    for (let i = 0; i < t.data.length; i++) bytes.writeFloatLE(t.data[i], i * 4);
    w.bytes(bytes);
    w.padTo(GGUF_ALIGNMENT);
  }
  return w.toBuffer();
}

export async function writeGguf(file: string, metadata: Record<string, GgufValue>, tensors: readonly GgufTensor[]): Promise<void> {
  await writeFile(file, encodeGguf(metadata, tensors));
}

/** The shape of the model writeMambaModel writes. */
export const MAMBA_FIXTURE = {
  architecture: "mamba",
  layers: 2,
  embeddingSize: 64,
  /** llama.cpp's mamba supports only an expansion factor of 2. */
  innerSize: 128,
  stateSize: 16,
  timeStepRank: 4,
  convKernel: 4,
  contextLength: 512,
  rmsEps: 1e-5,
} as const;

/** The tokenizer metadata of a llama-tokenizer GGUF (tokens, scores, types, special ids), as GGUF values. */
export async function llamaTokenizerOf(ggufFile: string): Promise<Record<string, GgufValue>> {
  const info = await readGgufFileInfo(ggufFile, { logWarnings: false, spliceSplitFiles: false });
  const tok = info.metadata.tokenizer?.ggml as Record<string, unknown> | undefined;
  if (!tok || tok.model !== "llama" || !Array.isArray(tok.tokens)) throw new Error(`${ggufFile} has no llama tokenizer`);
  const out: Record<string, GgufValue> = {
    "tokenizer.ggml.model": gguf.str("llama"),
    "tokenizer.ggml.tokens": gguf.strs(tok.tokens as string[]),
    "tokenizer.ggml.scores": gguf.f32s(tok.scores as number[]),
    "tokenizer.ggml.token_type": gguf.i32s(tok.token_type as number[]),
  };
  for (const id of ["bos_token_id", "eos_token_id", "unknown_token_id"]) {
    if (typeof tok[id] === "number") out[`tokenizer.ggml.${id}`] = gguf.u32(tok[id]);
  }
  return out;
}

/**
 * Writes a tiny but real llama.cpp `mamba` model: seeded random F32 weights, the llama tokenizer of `tokenizerFrom`
 * (default: the stories260K fixture). Its metadata are what llama.cpp's converter writes for Mamba, including the
 * `attention.head_count` of 0 it sets only because older loaders required the key. It loads and generates (gibberish).
 */
export async function writeMambaModel(file: string, options: { seed?: number; tokenizerFrom?: string } = {}): Promise<void> {
  const tokenizerFrom = options.tokenizerFrom ?? fileURLToPath(new URL("../../../shared/models/stories260K.gguf", import.meta.url));
  const tokenizer = await llamaTokenizerOf(tokenizerFrom);
  const vocab = (tokenizer["tokenizer.ggml.tokens"].value as readonly string[]).length;
  const m = MAMBA_FIXTURE;
  const a = m.architecture;
  const metadata: Record<string, GgufValue> = {
    "general.architecture": gguf.str(a),
    "general.name": gguf.str("kvzap test mamba"),
    "general.file_type": gguf.u32(0), // all F32
    [`${a}.context_length`]: gguf.u32(m.contextLength),
    [`${a}.embedding_length`]: gguf.u32(m.embeddingSize),
    [`${a}.feed_forward_length`]: gguf.u32(0),
    [`${a}.attention.head_count`]: gguf.u32(0),
    [`${a}.block_count`]: gguf.u32(m.layers),
    [`${a}.ssm.conv_kernel`]: gguf.u32(m.convKernel),
    [`${a}.ssm.inner_size`]: gguf.u32(m.innerSize),
    [`${a}.ssm.state_size`]: gguf.u32(m.stateSize),
    [`${a}.ssm.time_step_rank`]: gguf.u32(m.timeStepRank),
    [`${a}.attention.layer_norm_rms_epsilon`]: gguf.f32(m.rmsEps),
    [`${a}.ssm.dt_b_c_rms`]: gguf.bool(false),
    ...tokenizer,
  };

  const next = rng(options.seed ?? 1);
  /** Uniform in ±scale. */
  const uniform = (n: number, scale: number) => Float32Array.from({ length: n }, () => (2 * next() - 1) * scale);
  const fill = (n: number, v: number) => new Float32Array(n).fill(v);
  const tensor = (name: string, dims: number[], data: Float32Array): GgufTensor => ({ name, dims, data });
  const E = m.embeddingSize;
  const I = m.innerSize;
  const S = m.stateSize;
  const R = m.timeStepRank;
  const K = m.convKernel;
  const tensors: GgufTensor[] = [tensor("token_embd.weight", [E, vocab], uniform(E * vocab, 1)), tensor("output_norm.weight", [E], fill(E, 1))];
  for (let l = 0; l < m.layers; l++) {
    const b = `blk.${l}`;
    tensors.push(
      tensor(`${b}.attn_norm.weight`, [E], fill(E, 1)),
      tensor(`${b}.ssm_in.weight`, [E, 2 * I], uniform(E * 2 * I, 1 / Math.sqrt(E))),
      tensor(`${b}.ssm_conv1d.weight`, [K, I], uniform(K * I, 1 / Math.sqrt(K))),
      tensor(`${b}.ssm_conv1d.bias`, [I], uniform(I, 0.1)),
      tensor(`${b}.ssm_x.weight`, [I, R + 2 * S], uniform(I * (R + 2 * S), 1 / Math.sqrt(I))),
      tensor(`${b}.ssm_dt.weight`, [R, I], uniform(R * I, 1 / Math.sqrt(R))),
      tensor(`${b}.ssm_dt.bias`, [I], uniform(I, 0.5)),
      // A must be negative for the state to decay: -exp(log A) with log A small and random
      tensor(
        `${b}.ssm_a`,
        [S, I],
        uniform(S * I, 1).map((x) => -Math.exp(x)),
      ),
      tensor(`${b}.ssm_d`, [I], fill(I, 1)),
      tensor(`${b}.ssm_out.weight`, [I, E], uniform(I * E, 1 / Math.sqrt(I))),
    );
  }
  await writeGguf(file, metadata, tensors);
}
