// Which models KVzap can run. It keeps or drops the key/value pairs of attention layers, one list per (layer, KV
// head), so every layer must be an attention layer: a recurrent model (Mamba, RWKV) has none and a hybrid (Jamba,
// Falcon-H1, Qwen3-Next) has some layers without. Read from the GGUF header, so that `calibrate` and `--kv kvzap|window`
// fail before any work; `--kv full` is stock llama.cpp and runs any model.
import { UserError } from "../base/errors.js";
import { modelShape, readGgufHeader, type ModelShape } from "../engine/gguf.js";

/** What needs attention layers: fitting a profile, or running with a policy that drops KV pairs. */
export type KvzapUse = "calibrate" | "kvzap" | "window";

function consequence(use: KvzapUse): string {
  if (use === "calibrate") return "so it cannot be calibrated";
  return `so --kv ${use} cannot run it; use --kv full`;
}

function whatIsDropped(use: KvzapUse): string {
  if (use === "calibrate") return "KVzap scores the key/value pairs of attention layers";
  if (use === "kvzap") return "KVzap drops key/value pairs of attention layers";
  return "the window policy drops key/value pairs of attention layers";
}

/** The one message for a model KVzap cannot run, or null when every layer has attention. */
export function kvzapUnsupported(shape: Pick<ModelShape, "architecture" | "layers" | "attentionLayers">, file: string, use: KvzapUse): string | null {
  const { architecture, layers, attentionLayers } = shape;
  if (attentionLayers === 0) {
    return `${file} is a '${architecture}' model with no attention layers: ${whatIsDropped(use)}, ${consequence(use)}`;
  }
  if (attentionLayers < layers) {
    return (
      `${file} is a hybrid '${architecture}' model: ${layers - attentionLayers} of its ${layers} layers have no attention, ` +
      `and KVzap needs attention in every layer, ${consequence(use)}`
    );
  }
  return null;
}

/** Throws the message of kvzapUnsupported for a model KVzap cannot run. */
export function checkKvzapSupport(shape: Pick<ModelShape, "architecture" | "layers" | "attentionLayers">, file: string, use: KvzapUse): void {
  const why = kvzapUnsupported(shape, file, use);
  if (why !== null) throw new UserError(why);
}

/** Reads the GGUF header of `file` and throws one clear message when KVzap cannot run the model; returns its shape. */
export async function requireKvzapSupport(file: string, use: KvzapUse): Promise<ModelShape> {
  const shape = modelShape((await readGgufHeader(file)).info, file);
  checkKvzapSupport(shape, file, use);
  return shape;
}
