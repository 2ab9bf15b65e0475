// kvzap profile: import NVIDIA's KVzap checkpoints, show, list and validate profiles. Plain async functions; the
// CLI wrapper (src/cli/profile.ts) parses arguments and prints.
import { readFile, stat } from "node:fs/promises";
import { createHash } from "node:crypto";
import path from "node:path";
import { UserError } from "../base/errors.js";
import { VERSION } from "../base/version.js";
import { ProfileError } from "../profiles/errors.js";
import { readModelIdentity, type ModelIdentityFile } from "../profiles/fingerprint.js";
import { listProfiles, shippedProfilesDir, userProfilesDir, type ProfileEntry } from "../profiles/find.js";
import { PROFILE_FORMAT, PROFILE_VERSION, WEIGHTS_FILE, type ProfileManifest, type SurrogateSpec } from "../profiles/manifest.js";
import { claimProfileDir } from "../profiles/claim.js";
import { loadProfile, validateProfile, writeProfile, type Profile } from "../profiles/profile.js";
import { SafetensorsFormatError, decodeSafetensors } from "../profiles/safetensors.js";
import { keepForTau } from "../profiles/tau.js";
import { layerStats, layersFromTensors, parameterCount, type LayerStats } from "../profiles/weights.js";

/** The paper's published operating points (KVzap, Table 2): Linear τ = −7, MLP τ = −4. */
export const DEFAULT_IMPORT_TAU = { linear: -7, mlp: -4 } as const;
export const DEFAULT_WINDOW = 128;

export interface ImportOptions {
  /** A folder with NVIDIA's config.json (model_type "kvzap") and model.safetensors. */
  hfDir: string;
  /** The local GGUF the surrogate belongs to. */
  model: string;
  /** The profile folder to create. */
  out: string;
  tau?: number;
  window?: number;
  name?: string;
  /** Replace an existing profile at `out`. */
  force?: boolean;
}

export interface ImportResult {
  profile: Profile;
  model: ModelIdentityFile;
  /** The checkpoint's tensor type (converted to F32). */
  sourceDtype: string;
}

async function statOrNull(p: string) {
  try {
    return await stat(p);
  } catch {
    return null;
  }
}

function positiveInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v > 0;
}

/** Reads and checks a KVzap config.json into a surrogate spec. */
async function readHfConfig(hfDir: string): Promise<{ spec: SurrogateSpec; nameOrPath: string | null }> {
  const file = path.join(hfDir, "config.json");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new UserError(`${hfDir} is not a KVzap checkpoint folder: it has no config.json`);
  }
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof c !== "object" || c === null || c.model_type !== "kvzap") {
    throw new UserError(`${file} is not a KVzap config (model_type is ${JSON.stringify(c?.model_type)}, expected "kvzap")`);
  }
  for (const key of ["input_dim", "output_dim", "n_modules"]) {
    if (!positiveInt(c[key])) throw new UserError(`${file}: ${key} must be a positive whole number, got ${JSON.stringify(c[key])}`);
  }
  const hidden = c.hidden_dim ?? null;
  if (hidden !== null && !positiveInt(hidden))
    throw new UserError(`${file}: hidden_dim must be null (linear) or a positive whole number (MLP), got ${JSON.stringify(hidden)}`);
  const spec: SurrogateSpec = {
    kind: hidden === null ? "linear" : "mlp",
    inputDim: c.input_dim as number,
    outputDim: c.output_dim as number,
    hiddenDim: hidden as number | null,
    layers: c.n_modules as number,
  };
  return { spec, nameOrPath: typeof c._name_or_path === "string" && c._name_or_path ? c._name_or_path : null };
}

/** Converts NVIDIA's released KVzap weights (Hugging Face folder) into a kvzap profile for a GGUF model. */
export async function importProfile(opts: ImportOptions): Promise<ImportResult> {
  const hfDir = path.resolve(opts.hfDir);
  const st = await statOrNull(hfDir);
  if (!st) throw new UserError(`KVzap checkpoint folder not found: ${opts.hfDir}`);
  if (!st.isDirectory()) throw new UserError(`${opts.hfDir} is not a folder; give the folder holding config.json and model.safetensors`);
  const out = path.resolve(opts.out);
  const claim = await claimProfileDir(opts.out, { force: opts.force ?? false });
  try {
    return await convertCheckpoint(opts, hfDir, out);
  } finally {
    await claim.release();
  }
}

async function convertCheckpoint(opts: ImportOptions, hfDir: string, out: string): Promise<ImportResult> {
  const { spec, nameOrPath } = await readHfConfig(hfDir);
  const weightsFile = path.join(hfDir, "model.safetensors");
  let bytes: Buffer;
  try {
    bytes = await readFile(weightsFile);
  } catch {
    const bin = await statOrNull(path.join(hfDir, "pytorch_model.bin"));
    throw new UserError(`${hfDir} has no model.safetensors${bin ? " (only pytorch_model.bin, which kvzap cannot read; convert it to safetensors)" : ""}`);
  }
  let tensors;
  try {
    tensors = decodeSafetensors(bytes).tensors;
  } catch (e) {
    if (e instanceof SafetensorsFormatError) throw new UserError(`KVzap checkpoint ${weightsFile}: ${e.message}`);
    throw e;
  }
  // kvpress named the ModuleList `module_list` before it became `layers`.
  const prefix = [...tensors.keys()].some((n) => n.startsWith("module_list.")) ? "module_list" : "layers";
  const layers = layersFromTensors(tensors, spec, { where: `KVzap checkpoint ${weightsFile}`, declaredBy: "config.json" }, prefix);
  const dtypes = [...new Set([...tensors.values()].map((t) => t.dtype))].join("+");

  const model = await readModelIdentity(opts.model);
  const checks: [number, number, string, string][] = [
    [spec.inputDim, model.embeddingSize, "input_dim", "embedding size"],
    [spec.outputDim, model.kvHeads, "output_dim", "KV heads"],
    [spec.layers, model.layers, "n_modules", "layers"],
  ];
  for (const [want, have, key, what] of checks) {
    if (want !== have) {
      throw new ProfileError(`the KVzap checkpoint ${opts.hfDir} does not fit ${opts.model}: its ${key} is ${want}, the model's ${what} is ${have}`);
    }
  }

  const sha = createHash("sha256").update(bytes).digest("hex");
  const tau = opts.tau ?? DEFAULT_IMPORT_TAU[spec.kind];
  const manifest: ProfileManifest = {
    format: PROFILE_FORMAT,
    version: PROFILE_VERSION,
    name: opts.name ?? path.basename(hfDir),
    model: {
      architecture: model.architecture,
      layers: model.layers,
      embeddingSize: model.embeddingSize,
      kvHeads: model.kvHeads,
      headDim: model.headDim,
      fingerprint: model.fingerprint,
      file: path.basename(model.path),
    },
    surrogate: spec,
    tau,
    window: opts.window ?? DEFAULT_WINDOW,
    tauTable: [],
    provenance: {
      tool: `kvzap profile import ${VERSION}`,
      created: new Date().toISOString(),
      source: nameOrPath ? `${nameOrPath} (${hfDir})` : hfDir,
      data: [],
      notes:
        `converted from a KVzap checkpoint (model.safetensors ${dtypes}, sha256:${sha}) to F32; ` +
        (opts.tau === undefined ? `τ ${tau} is the paper's operating point for ${spec.kind} surrogates; ` : "") +
        "no τ table: run kvzap calibrate on this model to measure one",
    },
    weights: WEIGHTS_FILE,
  };
  const profile = await writeProfile(out, manifest, layers);
  return { profile, model, sourceDtype: dtypes };
}

export interface ProfileDetails {
  profile: Profile;
  parameters: number;
  weightsBytes: number;
  /** Kept fraction at the default τ, when the τ table covers it. */
  keepAtTau: number | null;
  layers: LayerStats[];
}

export async function showProfile(profilePath: string): Promise<ProfileDetails> {
  const profile = await loadProfile(profilePath);
  const { manifest } = profile;
  let keepAtTau: number | null;
  try {
    keepAtTau = keepForTau(manifest.tauTable, manifest.tau);
  } catch {
    keepAtTau = null;
  }
  const weightsBytes = (await stat(path.join(profile.dir, manifest.weights))).size;
  return { profile, parameters: parameterCount(manifest.surrogate), weightsBytes, keepAtTau, layers: layerStats(profile.layers) };
}

/** The folders `kvzap profile list` shows, shipped first. */
export function listedProfileDirs() {
  return [
    { dir: shippedProfilesDir, source: "shipped" as const },
    { dir: userProfilesDir(), source: "user" as const },
  ];
}

export async function listAllProfiles(): Promise<{ dirs: { dir: string; source: string }[]; entries: ProfileEntry[] }> {
  const dirs = listedProfileDirs();
  return { dirs, entries: await listProfiles(dirs) };
}

export interface ValidationResult {
  profile: Profile;
  model: ModelIdentityFile | null;
}

/** Every check: the profile on its own, then (with a model) that it was made for that model. */
export async function checkProfile(profilePath: string, modelPath?: string): Promise<ValidationResult> {
  const profile = await loadProfile(profilePath);
  if (modelPath === undefined) return { profile, model: null };
  const model = await readModelIdentity(modelPath);
  validateProfile(profile, model);
  return { profile, model };
}
