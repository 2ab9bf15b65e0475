// Which model a profile belongs to. The fingerprint must not change with quantisation (a profile fitted on the F16
// model serves its Q8_0 and Q4_K files too) but must change between models that merely share a shape, e.g. two
// fine-tunes. Tensor names and shapes give the first; the attention RMSNorm weights give the second: they are the
// very tensors the surrogate's input passes through, and llama.cpp keeps 1-D tensors F32 in every quantisation.
import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import type { GgufFileInfo } from "node-llama-cpp";
import { UserError } from "../base/errors.js";
import { modelShape, readGgufHeader, type ModelSummary } from "../engine/gguf.js";

const GGML_TYPE_F32 = 0;
const FINGERPRINT_VERSION = "kvzap-model-fingerprint 1";

/** What a profile is checked against: the model's shape and its fingerprint. */
export interface ModelIdentity extends Pick<ModelSummary, "architecture" | "layers" | "embeddingSize" | "kvHeads" | "headDim"> {
  fingerprint: string;
  /** The GGUF file, for messages. */
  path?: string;
}

/**
 * "sha256:<hex>" over the sorted tensor names with their shapes (not their types) and the raw bytes of every F32
 * `*.attn_norm.weight` tensor (one in another type contributes its name and shape only).
 */
export async function modelFingerprint(ggufPath: string, header?: { info: GgufFileInfo; size: number }): Promise<string> {
  const { info, size } = header ?? (await readGgufHeader(ggufPath));
  const tensors = [...(info.tensorInfo ?? [])].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const hash = createHash("sha256");
  hash.update(FINGERPRINT_VERSION + "\n");
  for (const t of tensors) hash.update(`${t.name} [${t.dimensions.map(Number).join(",")}]\n`);
  const fh = await open(ggufPath, "r");
  try {
    for (const t of tensors) {
      if (!t.name.endsWith(".attn_norm.weight") || t.ggmlType !== GGML_TYPE_F32) continue;
      const bytes = t.dimensions.reduce<number>((a, d) => a * Number(d), 1) * 4;
      const offset = Number(t.fileOffset);
      if (offset + bytes > size) throw new UserError(`the GGUF file is truncated: ${ggufPath} (tensor ${t.name} runs past its end); download it again`);
      const buf = Buffer.alloc(bytes);
      const { bytesRead } = await fh.read(buf, 0, bytes, offset);
      if (bytesRead !== bytes) throw new UserError(`the GGUF file is truncated: ${ggufPath} (tensor ${t.name} runs past its end); download it again`);
      hash.update(`${t.name} f32 ${bytes}\n`);
      hash.update(buf);
    }
  } finally {
    await fh.close();
  }
  return `sha256:${hash.digest("hex")}`;
}

/** A GGUF model's identity for profiles: what validateProfile and findProfileForModel take. */
export interface ModelIdentityFile extends ModelIdentity {
  path: string;
  name: string | null;
}

/**
 * The model's shape (as readModelSummary reads it) and fingerprint, from one read of the GGUF header. It needs no
 * native addon, so profile commands work before the engine is built.
 */
export async function readModelIdentity(ggufPath: string): Promise<ModelIdentityFile> {
  const header = await readGgufHeader(ggufPath);
  const { name, architecture, layers, embeddingSize, kvHeads, headDim } = modelShape(header.info, ggufPath);
  return { path: ggufPath, name, architecture, layers, embeddingSize, kvHeads, headDim, fingerprint: await modelFingerprint(ggufPath, header) };
}
