// profile.json: the human-readable half of a profile. Parsing checks every field and the fields' agreement with
// each other, so that the rest of the code can trust a ProfileManifest.
import { ProfileError } from "./errors.js";

export const PROFILE_FORMAT = "kvzap-profile";
export const PROFILE_VERSION = 1;
export const MANIFEST_FILE = "profile.json";
export const WEIGHTS_FILE = "weights.safetensors";

export type SurrogateKind = "linear" | "mlp";

/** One measured operating point: at threshold τ the cache keeps this fraction of KV pairs (compression = 1/keep). */
export interface TauPoint {
  tau: number;
  keep: number;
  compression: number;
}

export interface ProfileModel {
  architecture: string;
  layers: number;
  embeddingSize: number;
  kvHeads: number;
  headDim: number;
  /** modelFingerprint() of the GGUF the surrogate was fitted to ("sha256:<hex>"). */
  fingerprint: string;
  /** File name of that GGUF, for people; matching uses the fingerprint. */
  file: string | null;
}

export interface SurrogateSpec {
  kind: SurrogateKind;
  /** D: the model's embedding size. */
  inputDim: number;
  /** H_kv: the model's KV heads. */
  outputDim: number;
  /** MLP hidden width (NVIDIA's checkpoints: 512 whatever D is; ours: D/8); null for linear. */
  hiddenDim: number | null;
  layers: number;
}

export interface Provenance {
  /** What made it, with version: "kvzap calibrate 0.1.0", "kvzap profile import 0.1.0". */
  tool: string;
  /** ISO 8601 date and time. */
  created: string;
  source?: string;
  /** The calibration data, one object per corpus or document set. */
  data?: Record<string, unknown>[];
  notes?: string;
  [key: string]: unknown;
}

export interface ProfileManifest {
  format: typeof PROFILE_FORMAT;
  version: typeof PROFILE_VERSION;
  name: string;
  model: ProfileModel;
  surrogate: SurrogateSpec;
  /** Default threshold on the predicted natural-log score. */
  tau: number;
  /** Default number of recent tokens never evicted. */
  window: number;
  /** Sorted by τ ascending once parsed; keep falls (and compression rises) as τ rises. May be empty. */
  tauTable: TauPoint[];
  provenance: Provenance;
  /** Weights file name, relative to the profile folder. */
  weights: string;
}

type Obj = Record<string, unknown>;

class Fields {
  constructor(
    private readonly file: string,
    private readonly prefix = "",
  ) {}

  fail(field: string, problem: string): never {
    throw new ProfileError(`profile ${this.file}: ${this.prefix}${field} ${problem}`);
  }

  object(o: Obj, key: string): Obj {
    const v = o[key];
    if (v === undefined) this.fail(key, "is missing");
    if (typeof v !== "object" || v === null || Array.isArray(v)) this.fail(key, `must be an object, got ${JSON.stringify(v)}`);
    return v as Obj;
  }

  string(o: Obj, key: string): string {
    const v = o[key];
    if (v === undefined) this.fail(key, "is missing");
    if (typeof v !== "string" || v.trim() === "") this.fail(key, `must be a non-empty string, got ${JSON.stringify(v)}`);
    return v;
  }

  optionalString(o: Obj, key: string): string | undefined {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") this.fail(key, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  number(o: Obj, key: string): number {
    const v = o[key];
    if (v === undefined) this.fail(key, "is missing");
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(key, `must be a finite number, got ${JSON.stringify(v)}`);
    return v;
  }

  int(o: Obj, key: string, min: number): number {
    const v = o[key];
    if (v === undefined) this.fail(key, "is missing");
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) this.fail(key, `must be a whole number ≥ ${min}, got ${JSON.stringify(v)}`);
    return v;
  }

  nested(key: string): Fields {
    return new Fields(this.file, `${this.prefix}${key}.`);
  }
}

/**
 * Checks a parsed profile.json and returns it typed, its τ table sorted by τ. `file` names the manifest in messages.
 * Throws ProfileError for a wrong format or version, a missing or ill-typed field, or fields that disagree.
 */
export function parseManifest(raw: unknown, file: string): ProfileManifest {
  const f: Fields = new Fields(file);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ProfileError(`profile ${file}: not a kvzap profile manifest (not a JSON object)`);
  const o = raw as Obj;
  if (o.format !== PROFILE_FORMAT) {
    throw new ProfileError(`profile ${file}: not a kvzap profile manifest (format is ${JSON.stringify(o.format)}, expected "${PROFILE_FORMAT}")`);
  }
  if (o.version !== PROFILE_VERSION) {
    const newer = typeof o.version === "number" && o.version > PROFILE_VERSION;
    throw new ProfileError(
      newer
        ? `profile ${file}: manifest version ${o.version} was written by a newer kvzap; this one reads version ${PROFILE_VERSION}`
        : `profile ${file}: unsupported manifest version ${JSON.stringify(o.version)}, expected ${PROFILE_VERSION}`,
    );
  }
  const name = f.string(o, "name");

  const mo = f.object(o, "model");
  const mf: Fields = f.nested("model");
  const file_ = mo.file === undefined || mo.file === null ? null : mf.string(mo, "file");
  const model: ProfileModel = {
    architecture: mf.string(mo, "architecture"),
    layers: mf.int(mo, "layers", 1),
    embeddingSize: mf.int(mo, "embeddingSize", 1),
    kvHeads: mf.int(mo, "kvHeads", 1),
    headDim: mf.int(mo, "headDim", 1),
    fingerprint: mf.string(mo, "fingerprint"),
    file: file_,
  };
  if (!/^sha256:[0-9a-f]{64}$/.test(model.fingerprint)) mf.fail("fingerprint", `must be "sha256:" and 64 hex digits, got ${JSON.stringify(model.fingerprint)}`);

  const so = f.object(o, "surrogate");
  const sf: Fields = f.nested("surrogate");
  const kind = so.kind;
  if (kind !== "linear" && kind !== "mlp") sf.fail("kind", `must be "linear" or "mlp", got ${JSON.stringify(kind)}`);
  const surrogate: SurrogateSpec = {
    kind,
    inputDim: sf.int(so, "inputDim", 1),
    outputDim: sf.int(so, "outputDim", 1),
    hiddenDim: null,
    layers: sf.int(so, "layers", 1),
  };
  if (kind === "linear") {
    if (so.hiddenDim !== null && so.hiddenDim !== undefined) sf.fail("hiddenDim", `must be null for a linear surrogate, got ${JSON.stringify(so.hiddenDim)}`);
  } else {
    if (so.hiddenDim === null || so.hiddenDim === undefined) sf.fail("hiddenDim", "must be a whole number for an MLP surrogate, got null");
    surrogate.hiddenDim = sf.int(so, "hiddenDim", 1);
  }
  if (surrogate.inputDim !== model.embeddingSize) sf.fail("inputDim", `(${surrogate.inputDim}) differs from model.embeddingSize (${model.embeddingSize})`);
  if (surrogate.outputDim !== model.kvHeads) sf.fail("outputDim", `(${surrogate.outputDim}) differs from model.kvHeads (${model.kvHeads})`);
  if (surrogate.layers !== model.layers) sf.fail("layers", `(${surrogate.layers}) differs from model.layers (${model.layers})`);

  const tau = f.number(o, "tau");
  const window = f.int(o, "window", 0);
  const tauTable = parseTauTable(o.tauTable, f);

  const po = f.object(o, "provenance");
  const pf: Fields = f.nested("provenance");
  const provenance: Provenance = { ...po, tool: pf.string(po, "tool"), created: pf.string(po, "created") };
  for (const key of ["source", "notes"]) pf.optionalString(po, key);
  if (po.data !== undefined && (!Array.isArray(po.data) || !po.data.every((d) => typeof d === "object" && d !== null && !Array.isArray(d)))) {
    pf.fail("data", "must be a list of objects");
  }

  const weights = f.string(o, "weights");
  if (weights.includes("/") || weights.includes("\\") || weights === "." || weights === "..") {
    f.fail("weights", `must be a file name inside the profile folder, got ${JSON.stringify(weights)}`);
  }
  return { format: PROFILE_FORMAT, version: PROFILE_VERSION, name, model, surrogate, tau, window, tauTable, provenance, weights };
}

function parseTauTable(v: unknown, f: Fields): TauPoint[] {
  if (v === undefined) f.fail("tauTable", "is missing (use [] when nothing was measured)");
  if (!Array.isArray(v)) f.fail("tauTable", `must be a list, got ${JSON.stringify(v)}`);
  const rows = v.map((row: unknown, i: number) => {
    const rf: Fields = f.nested(`tauTable[${i}]`);
    if (typeof row !== "object" || row === null || Array.isArray(row)) f.fail(`tauTable[${i}]`, `must be an object, got ${JSON.stringify(row)}`);
    const r = row as Obj;
    const p: TauPoint = { tau: rf.number(r, "tau"), keep: rf.number(r, "keep"), compression: rf.number(r, "compression") };
    if (p.keep <= 0 || p.keep > 1) rf.fail("keep", `must be in (0, 1], got ${p.keep}`);
    if (p.compression < 1) rf.fail("compression", `must be at least 1, got ${p.compression}`);
    return p;
  });
  rows.sort((a, b) => a.tau - b.tau);
  for (let i = 1; i < rows.length; i++) {
    const [a, b] = [rows[i - 1], rows[i]];
    if (a.tau === b.tau) f.fail("tauTable", `lists τ = ${a.tau} twice`);
    if (b.keep > a.keep || b.compression < a.compression) {
      f.fail("tauTable", `is not monotone: a higher τ must keep no more (τ ${a.tau}: keep ${a.keep}, ${a.compression}x; τ ${b.tau}: keep ${b.keep}, ${b.compression}x)`);
    }
  }
  return rows;
}

/** profile.json text: two-space indentation, each τ-table row and each provenance.data item on one line. */
export function formatManifest(manifest: ProfileManifest): string {
  return format(manifest, "") + "\n";
}

function isFlatObject(v: unknown): boolean {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.values(v).every((x) => x === null || typeof x !== "object");
}

function oneLine(o: Obj): string {
  const entries = Object.entries(o).filter(([, x]) => x !== undefined);
  return entries.length === 0 ? "{}" : `{ ${entries.map(([k, x]) => `${JSON.stringify(k)}: ${JSON.stringify(x)}`).join(", ")} }`;
}

function format(v: unknown, indent: string): string {
  const inner = indent + "  ";
  if (Array.isArray(v)) {
    if (v.length === 0) return "[]";
    if (v.every(isFlatObject)) return `[\n${v.map((x) => inner + oneLine(x as Obj)).join(",\n")}\n${indent}]`;
    return `[\n${v.map((x) => inner + format(x, inner)).join(",\n")}\n${indent}]`;
  }
  if (typeof v === "object" && v !== null) {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined);
    if (entries.length === 0) return "{}";
    return `{\n${entries.map(([k, x]) => `${inner}${JSON.stringify(k)}: ${format(x, inner)}`).join(",\n")}\n${indent}}`;
  }
  return JSON.stringify(v);
}
