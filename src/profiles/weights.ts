// Surrogate weights in memory and their tensor names, which are those of NVIDIA's KVzap checkpoints
// (kvpress KVzapModel: `layers` is an nn.ModuleList of nn.Linear, or of nn.Sequential(Linear, GELU, Linear)).
import { ProfileError } from "./errors.js";
import type { SurrogateKind, SurrogateSpec } from "./manifest.js";
import type { Tensor, TensorToWrite } from "./safetensors.js";

/** One layer's surrogate, row-major as PyTorch stores nn.Linear ([out][in]). */
export type LayerWeights =
  | {
      kind: "linear";
      /** [H_kv][D] */
      weight: Float32Array;
      /** [H_kv] */
      bias: Float32Array;
    }
  | {
      kind: "mlp";
      /** [hidden][D] */
      w1: Float32Array;
      /** [hidden] */
      b1: Float32Array;
      /** [H_kv][hidden] */
      w2: Float32Array;
      /** [H_kv] */
      b2: Float32Array;
      hidden: number;
    };

export interface TensorSlot {
  name: string;
  shape: number[];
  layer: number;
  field: "weight" | "bias" | "w1" | "b1" | "w2" | "b2";
}

/** Every tensor a surrogate of this spec consists of, with its NVIDIA name and shape, layer by layer. */
export function tensorSlots(spec: Pick<SurrogateSpec, "kind" | "inputDim" | "outputDim" | "hiddenDim" | "layers">, prefix = "layers"): TensorSlot[] {
  const slots: TensorSlot[] = [];
  const { inputDim: d, outputDim: h } = spec;
  for (let l = 0; l < spec.layers; l++) {
    if (spec.kind === "linear") {
      slots.push({ name: `${prefix}.${l}.weight`, shape: [h, d], layer: l, field: "weight" });
      slots.push({ name: `${prefix}.${l}.bias`, shape: [h], layer: l, field: "bias" });
    } else {
      const m = spec.hiddenDim ?? 0;
      slots.push({ name: `${prefix}.${l}.0.weight`, shape: [m, d], layer: l, field: "w1" });
      slots.push({ name: `${prefix}.${l}.0.bias`, shape: [m], layer: l, field: "b1" });
      slots.push({ name: `${prefix}.${l}.2.weight`, shape: [h, m], layer: l, field: "w2" });
      slots.push({ name: `${prefix}.${l}.2.bias`, shape: [h], layer: l, field: "b2" });
    }
  }
  return slots;
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function field(layer: LayerWeights, f: TensorSlot["field"]): Float32Array | undefined {
  return (layer as unknown as Record<string, Float32Array | undefined>)[f];
}

/** Where a non-finite value sits in a tensor of this shape, as "[row, col]". */
function position(index: number, shape: number[]): string {
  if (shape.length < 2) return `[${index}]`;
  return `[${Math.floor(index / shape[1])}, ${index % shape[1]}]`;
}

function firstNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i])) return i;
  return -1;
}

export interface WeightsContext {
  /** Names the weights in messages: "profile weights /p/weights.safetensors". */
  where: string;
  /** What declares the shapes: "the manifest", "config.json". */
  declaredBy: string;
}

/**
 * Builds per-layer weights from named tensors, checking that exactly the tensors of `spec` are there, with its
 * shapes, and that every value is finite. `prefix` is the ModuleList's name in the file.
 */
export function layersFromTensors(tensors: Map<string, Tensor>, spec: SurrogateSpec, ctx: WeightsContext, prefix = "layers"): LayerWeights[] {
  const slots = tensorSlots(spec, prefix);
  const missing = slots.filter((s) => !tensors.has(s.name)).map((s) => s.name);
  if (missing.length > 0) {
    const hint = missing.length === slots.length ? ` (it holds ${[...tensors.keys()].slice(0, 3).join(", ") || "no tensors"}${tensors.size > 3 ? ", …" : ""}; is it a ${spec.kind} surrogate?)` : "";
    throw new ProfileError(`${ctx.where}: missing tensor${missing.length > 1 ? "s" : ""} ${list(missing)}${hint}`);
  }
  const expected = new Set(slots.map((s) => s.name));
  const extra = [...tensors.keys()].filter((n) => !expected.has(n));
  if (extra.length > 0) throw new ProfileError(`${ctx.where}: unexpected tensor${extra.length > 1 ? "s" : ""} ${list(extra)}, which ${ctx.declaredBy} does not declare`);
  const parts: Record<string, Float32Array>[] = Array.from({ length: spec.layers }, () => ({}));
  for (const s of slots) {
    const t = tensors.get(s.name)!;
    if (!sameShape(t.shape, s.shape)) throw new ProfileError(`${ctx.where}: ${s.name} has shape ${shapeText(t.shape)}, ${ctx.declaredBy} says ${shapeText(s.shape)}`);
    const bad = firstNonFinite(t.data);
    if (bad >= 0) throw new ProfileError(`${ctx.where}: ${s.name} holds ${t.data[bad]} at ${position(bad, s.shape)}; every weight must be finite`);
    parts[s.layer][s.field] = t.data;
  }
  return parts.map((p) => makeLayer(spec.kind, p, spec.hiddenDim ?? 0));
}

function makeLayer(kind: SurrogateKind, p: Record<string, Float32Array>, hidden: number): LayerWeights {
  return kind === "linear" ? { kind, weight: p.weight, bias: p.bias } : { kind, w1: p.w1, b1: p.b1, w2: p.w2, b2: p.b2, hidden };
}

function list(names: string[]): string {
  return names.length <= 4 ? names.join(", ") : `${names.slice(0, 4).join(", ")} and ${names.length - 4} more`;
}

/** Checks in-memory layers against a spec (count, kind, sizes, finite values); ProfileError naming `where`. */
export function checkLayers(layers: LayerWeights[], spec: SurrogateSpec, where: string): void {
  if (layers.length !== spec.layers) throw new ProfileError(`${where}: ${layers.length} layers of weights, the manifest says ${spec.layers}`);
  for (const s of tensorSlots(spec)) {
    const layer = layers[s.layer];
    if (layer.kind !== spec.kind) throw new ProfileError(`${where}: layer ${s.layer} is ${layer.kind}, the manifest says ${spec.kind}`);
    if (layer.kind === "mlp" && layer.hidden !== spec.hiddenDim) throw new ProfileError(`${where}: layer ${s.layer} has hidden width ${layer.hidden}, the manifest says ${spec.hiddenDim}`);
    const data = field(layer, s.field);
    const n = s.shape.reduce((a, d) => a * d, 1);
    if (!(data instanceof Float32Array)) throw new ProfileError(`${where}: ${s.name} is not a Float32Array`);
    if (data.length !== n) throw new ProfileError(`${where}: ${s.name} holds ${data.length} values, shape ${shapeText(s.shape)} needs ${n}`);
    const bad = firstNonFinite(data);
    if (bad >= 0) throw new ProfileError(`${where}: ${s.name} holds ${data[bad]} at ${position(bad, s.shape)}; every weight must be finite`);
  }
}

/** The named F32 tensors of checked layers, ready for encodeSafetensors. */
export function tensorsFromLayers(layers: LayerWeights[], spec: SurrogateSpec): Map<string, TensorToWrite> {
  const out = new Map<string, TensorToWrite>();
  for (const s of tensorSlots(spec)) out.set(s.name, { dtype: "F32", shape: s.shape, data: field(layers[s.layer], s.field)! });
  return out;
}

export interface LayerStats {
  layer: number;
  /** Root mean square over all weight matrices of the layer (biases excluded). */
  weightRms: number;
  weightMaxAbs: number;
  /** The output bias: the predicted log score of an all-zero input, per KV head. */
  biasMean: number;
  biasMin: number;
  biasMax: number;
}

export function layerStats(layers: LayerWeights[]): LayerStats[] {
  return layers.map((w, layer) => {
    const mats = w.kind === "linear" ? [w.weight] : [w.w1, w.w2];
    const bias = w.kind === "linear" ? w.bias : w.b2;
    let sq = 0;
    let n = 0;
    let maxAbs = 0;
    for (const m of mats) {
      for (const v of m) {
        sq += v * v;
        maxAbs = Math.max(maxAbs, Math.abs(v));
      }
      n += m.length;
    }
    let sum = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of bias) {
      sum += v;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    return { layer, weightRms: Math.sqrt(sq / Math.max(1, n)), weightMaxAbs: maxAbs, biasMean: sum / Math.max(1, bias.length), biasMin: lo, biasMax: hi };
  });
}

/** Parameters of a surrogate of this spec (all layers). */
export function parameterCount(spec: SurrogateSpec): number {
  return tensorSlots(spec).reduce((a, s) => a + s.shape.reduce((x, d) => x * d, 1), 0);
}
