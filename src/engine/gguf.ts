// Reads what kvzap needs to know about a GGUF file without loading its weights: shape, KV cache cost, integrity.
import { open, stat } from "node:fs/promises";
import path from "node:path";
import { readGgufFileInfo, type GgufFileInfo } from "node-llama-cpp";
import { UserError } from "../base/errors.js";
import { loadAddon } from "./addon.js";

export interface ModelSummary extends ModelShape {
  path: string;
  weightType: string;
  parameters: number;
  sizeBytes: number;
  chatTemplate: boolean;
  vocabSize: number | null;
  /** Bytes of K plus V for one token over all attention layers and KV heads. */
  kvBytesPerToken: { f16: number; q8_0: number };
}

const GGUF_MAGIC = "GGUF";

/** Rejects what is not a readable GGUF file with a message a person can act on; returns its size and mtime. */
export async function checkGgufFile(file: string): Promise<number> {
  return (await checkedGgufStat(file)).size;
}

async function checkedGgufStat(file: string): Promise<{ size: number; mtimeMs: number }> {
  let st;
  try {
    st = await stat(file);
  } catch {
    throw new UserError(`model file not found: ${file}`);
  }
  if (st.isDirectory()) throw new UserError(`model path is a directory, not a GGUF file: ${file}`);
  if (st.size < 8) throw new UserError(`not a GGUF model file: ${file} (${st.size} bytes)`);
  const fh = await open(file, "r");
  try {
    const buf = Buffer.alloc(4);
    await fh.read(buf, 0, 4, 0);
    if (buf.toString("latin1") !== GGUF_MAGIC) {
      throw new UserError(`not a GGUF model file: ${file} (it does not start with 'GGUF')`);
    }
  } finally {
    await fh.close();
  }
  return { size: st.size, mtimeMs: st.mtimeMs };
}

function num(v: unknown): number | undefined {
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (Array.isArray(v) && v.length > 0) return num(v[0]);
  return undefined;
}

/** Bytes of a KV row of `elements` values (one token, all KV heads of a layer, as llama.cpp stores it) in a
 * block-quantised type (q8_0: 34 bytes per 32 values). */
function rowBytes(elements: number, typeSize: number, blockSize: number): number {
  return Math.ceil(elements / blockSize) * typeSize;
}

/** The architecture fields every caller needs, read from GGUF metadata alone (no native addon). */
export interface ModelShape {
  name: string | null;
  architecture: string;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  headDimV: number;
  embeddingSize: number;
  contextLength: number;
  /** Layers with attention, hence a KV cache: all of them in a transformer, none in a recurrent model (Mamba, RWKV),
   * some in a hybrid (Jamba, Falcon-H1, Qwen3-Next). */
  attentionLayers: number;
}

// Headers already read, by path, while the file keeps its size and mtime: a command asks for the summary, the KV policy
// check and the profile identity of one model, and a large vocabulary makes each read cost.
const headers = new Map<string, { stamp: string; header: Promise<{ info: GgufFileInfo; size: number }> }>();
const HEADERS_KEPT = 4;

/** The GGUF header (metadata and tensor infos) of a checked file, or one clear error for a truncated or corrupt one. */
export async function readGgufHeader(file: string): Promise<{ info: GgufFileInfo; size: number }> {
  const { size, mtimeMs } = await checkedGgufStat(file);
  const key = path.resolve(file);
  const stamp = `${size}:${mtimeMs}`;
  const known = headers.get(key);
  headers.delete(key); // re-inserted below: the map's order is least recently used first
  if (known?.stamp === stamp) {
    headers.set(key, known);
    return known.header;
  }
  const header = parseGgufHeader(file, size);
  headers.set(key, { stamp, header });
  if (headers.size > HEADERS_KEPT) headers.delete(headers.keys().next().value!);
  header.catch(() => {
    if (headers.get(key)?.header === header) headers.delete(key);
  });
  return header;
}

async function parseGgufHeader(file: string, size: number): Promise<{ info: GgufFileInfo; size: number }> {
  let info: GgufFileInfo;
  try {
    info = await readGgufFileInfo(file, { logWarnings: false, spliceSplitFiles: false });
  } catch (e) {
    throw new UserError(`the GGUF file is truncated or corrupted: ${file} (${e instanceof Error ? e.message : String(e)})`);
  }
  const tensorCount = Number(info.tensorCount);
  if ((info.infoEndOffset ?? 0) > size || (info.tensorInfo?.length ?? 0) < tensorCount) {
    throw new UserError(`the GGUF file is truncated or corrupted: ${file} (its header runs past the end of the file)`);
  }
  return { info, size };
}

/** A value GGUF gives either once for every layer or as an array of one per layer, as one number per layer. */
function perLayer(v: unknown, layers: number): number[] | undefined {
  if (Array.isArray(v)) return Array.from({ length: layers }, (_, l) => num(v[l]) ?? 0);
  const n = num(v);
  return n === undefined ? undefined : new Array<number>(layers).fill(n);
}

/** Which layers are recurrent in a hybrid that says so with a flag per layer or an interval between attention layers. */
function recurrentLayers(am: Record<string, unknown>, attention: Record<string, unknown>, layers: number): boolean[] {
  const flags = attention.recurrent_layers;
  if (Array.isArray(flags)) return Array.from({ length: layers }, (_, l) => Boolean(flags[l]));
  const interval = num(am.full_attention_interval);
  // llama.cpp's rule: layer l has full attention when (l + 1) is a multiple of the interval
  if (interval !== undefined && interval > 1) return Array.from({ length: layers }, (_, l) => (l + 1) % interval !== 0);
  return new Array<boolean>(layers).fill(false);
}

export function modelShape(info: GgufFileInfo, file: string): ModelShape {
  const general = info.metadata.general;
  const architecture = String(general?.architecture ?? "");
  if (!architecture) throw new UserError(`the GGUF file names no architecture: ${file}`);
  const am = info.architectureMetadata as Record<string, unknown> & { attention?: Record<string, unknown> };
  const attention = am.attention ?? {};
  const layers = num(am.block_count) ?? 0;
  const embeddingSize = num(am.embedding_length) ?? 0;
  // Recurrent models write head_count 0 or none; hybrids give head counts per layer, 0 where a layer has no attention.
  const headsPerLayer = perLayer(attention.head_count, layers) ?? new Array<number>(layers).fill(0);
  const kvPerLayer = perLayer(attention.head_count_kv, layers) ?? headsPerLayer;
  const recurrent = recurrentLayers(am, attention, layers);
  const attentionLayers = kvPerLayer.filter((kv, l) => kv > 0 && !recurrent[l]).length;
  // the first layer with attention speaks for all (a hybrid's first layer may have none)
  const heads = headsPerLayer.find((h) => h > 0) ?? 0;
  const kvHeads = kvPerLayer.find((h) => h > 0) ?? 0;
  const headDim = num(attention.key_length) ?? (heads > 0 ? embeddingSize / heads : 0);
  return {
    name: typeof general?.name === "string" ? general.name : null,
    architecture,
    layers,
    heads,
    kvHeads,
    headDim,
    headDimV: num(attention.value_length) ?? headDim,
    embeddingSize,
    contextLength: num(am.context_length) ?? 0,
    attentionLayers,
  };
}

export async function readModelSummary(file: string): Promise<ModelSummary> {
  const { info, size } = await readGgufHeader(file);
  const shape = modelShape(info, file);
  const { attentionLayers, kvHeads, headDim, headDimV } = shape;
  const am = info.architectureMetadata as Record<string, unknown>;

  const types = new Map(
    loadAddon()
      .ggmlTypes()
      .map((t) => [t.id, t]),
  );
  let parameters = 0;
  let dataEnd = 0;
  const weightCounts = new Map<string, number>();
  for (const t of info.tensorInfo ?? []) {
    const elements = t.dimensions.reduce<number>((a, d) => a * Number(d), 1);
    parameters += elements;
    const ty = types.get(t.ggmlType);
    if (ty) {
      dataEnd = Math.max(dataEnd, Number(t.fileOffset) + (elements / ty.blockSize) * ty.typeSize);
      if (t.dimensions.length >= 2) weightCounts.set(ty.name, (weightCounts.get(ty.name) ?? 0) + elements);
    }
  }
  if (dataEnd > size) {
    throw new UserError(`the GGUF file is truncated: ${file} holds ${size} bytes but its tensors need ${dataEnd}; download it again`);
  }
  const f16 = types.get(1)!;
  const q8 = types.get(8)!;
  const perToken = (t: { typeSize: number; blockSize: number }) =>
    attentionLayers * (rowBytes(kvHeads * headDim, t.typeSize, t.blockSize) + rowBytes(kvHeads * headDimV, t.typeSize, t.blockSize));
  const dominant = [...weightCounts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? "unknown";
  const vocabTokens: unknown = info.metadata.tokenizer?.ggml?.tokens;
  return {
    path: file,
    ...shape,
    weightType: dominant,
    parameters,
    sizeBytes: size,
    chatTemplate: typeof info.metadata.tokenizer?.chat_template === "string",
    vocabSize: num(am.vocab_size) ?? (Array.isArray(vocabTokens) ? vocabTokens.length : null),
    kvBytesPerToken: { f16: perToken(f16), q8_0: perToken(q8) },
  };
}
