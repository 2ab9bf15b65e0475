// A KVzap profile: a folder holding profile.json (the manifest) and the surrogate weights (safetensors, F32).
import { mkdir, readFile, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { ProfileError } from "./errors.js";
import type { ModelIdentity } from "./fingerprint.js";
import { MANIFEST_FILE, formatManifest, parseManifest, type ProfileManifest } from "./manifest.js";
import { SafetensorsFormatError, decodeSafetensors, encodeSafetensors } from "./safetensors.js";
import { tempNameFor, writeFileSynced } from "../base/files.js";
import { checkLayers, layersFromTensors, tensorsFromLayers, type LayerWeights } from "./weights.js";

export interface Profile {
  /** The profile folder. */
  dir: string;
  /** Its manifest file (normally `<dir>/profile.json`). */
  manifestPath: string;
  manifest: ProfileManifest;
  /** One per model layer. */
  layers: LayerWeights[];
}

async function statOrNull(p: string) {
  try {
    return await stat(p);
  } catch {
    return null;
  }
}

/** The manifest a `--profile PATH` names: PATH itself when it is a file, `PATH/profile.json` when a folder. */
export async function resolveManifestPath(profilePath: string): Promise<string> {
  const st = await statOrNull(profilePath);
  if (!st) throw new ProfileError(`profile not found: ${profilePath}`);
  if (!st.isDirectory()) return profilePath;
  const manifest = path.join(profilePath, MANIFEST_FILE);
  if (!(await statOrNull(manifest))?.isFile()) throw new ProfileError(`not a kvzap profile: ${profilePath} has no ${MANIFEST_FILE}`);
  return manifest;
}

/** Reads and checks a manifest only (no weights): cheap enough to scan a folder of profiles. */
export async function readManifest(manifestPath: string): Promise<ProfileManifest> {
  let text: string;
  try {
    text = await readFile(manifestPath, "utf8");
  } catch (e) {
    throw new ProfileError(`cannot read profile ${manifestPath}: ${e instanceof Error ? e.message : String(e)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch (e) {
    throw new ProfileError(`profile ${manifestPath} is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  return parseManifest(raw, manifestPath);
}

/** Loads a profile (its folder or its manifest) with every check that needs no model: see validateProfile for those. */
export async function loadProfile(profilePath: string): Promise<Profile> {
  const manifestPath = await resolveManifestPath(profilePath);
  const manifest = await readManifest(manifestPath);
  const dir = path.dirname(manifestPath);
  const weightsPath = path.join(dir, manifest.weights);
  let bytes: Buffer;
  try {
    bytes = await readFile(weightsPath);
  } catch (e) {
    const missing = (e as NodeJS.ErrnoException).code === "ENOENT";
    throw new ProfileError(missing ? `profile ${manifestPath}: its weights file ${weightsPath} is missing` : `cannot read profile weights ${weightsPath}: ${(e as Error).message}`);
  }
  const where = `profile weights ${weightsPath}`;
  let tensors;
  try {
    tensors = decodeSafetensors(bytes).tensors;
  } catch (e) {
    if (e instanceof SafetensorsFormatError) throw new ProfileError(`${where}: ${e.message}`);
    throw e;
  }
  const layers = layersFromTensors(tensors, manifest.surrogate, { where, declaredBy: "the manifest" });
  return { dir, manifestPath, manifest, layers };
}

/**
 * Checks that a loaded profile was made for this model: its shape (naming the field that differs), then its
 * fingerprint. `checkFingerprint: false` accepts a profile for a same-shaped model (e.g. a fine-tune) knowingly.
 */
export function validateProfile(profile: Pick<Profile, "manifestPath" | "manifest">, model: ModelIdentity, options: { checkFingerprint?: boolean } = {}): void {
  const p = profile.manifest.model;
  const file = profile.manifestPath;
  if (p.architecture !== model.architecture) {
    throw new ProfileError(`profile ${file} is for a ${p.architecture} model, this model is ${model.architecture}`);
  }
  const fields: [number, number, string][] = [
    [p.layers, model.layers, "layers"],
    [p.embeddingSize, model.embeddingSize, "embedding size"],
    [p.kvHeads, model.kvHeads, "KV heads"],
    [p.headDim, model.headDim, "head dim"],
  ];
  for (const [want, have, what] of fields) {
    if (want === have) continue;
    const phrase = (n: number) => (what === "layers" || what === "KV heads" ? `${n} ${what}` : `${what} ${n}`);
    throw new ProfileError(`profile ${file} is for a model with ${phrase(want)}, this model has ${have}`);
  }
  if (options.checkFingerprint !== false && p.fingerprint !== model.fingerprint) {
    throw new ProfileError(
      `profile ${file} was made for another model (fingerprint ${short(p.fingerprint)}${p.file ? `, ${p.file}` : ""}; ` +
        `this model's is ${short(model.fingerprint)}); calibrate one with kvzap calibrate`,
    );
  }
}

function short(fingerprint: string): string {
  return fingerprint.length > 19 ? `${fingerprint.slice(0, 19)}…` : fingerprint;
}

async function isProfileFolder(dir: string): Promise<boolean> {
  const entries = await readdir(dir);
  return entries.length === 0 || entries.includes(MANIFEST_FILE);
}

/**
 * Writes a profile folder atomically: everything goes to a temporary sibling folder which is then renamed to `dir`.
 * An existing profile at `dir` is replaced; any other non-empty folder there is refused.
 */
export async function writeProfile(dir: string, manifest: ProfileManifest, layers: LayerWeights[]): Promise<Profile> {
  const target = path.resolve(dir);
  const manifestPath = path.join(target, MANIFEST_FILE);
  // Round-trip through the parser so that what is written is exactly what loadProfile accepts.
  const checked = parseManifest(JSON.parse(JSON.stringify(manifest)), manifestPath);
  checkLayers(layers, checked.surrogate, `profile ${target}`);

  const existing = await statOrNull(target);
  if (existing && (!existing.isDirectory() || !(await isProfileFolder(target)))) {
    throw new ProfileError(`cannot write profile ${target}: it exists and is not a kvzap profile folder`);
  }
  const parent = path.dirname(target);
  await mkdir(parent, { recursive: true });
  const tmp = tempNameFor(target);
  const old = tempNameFor(target);
  try {
    await mkdir(tmp);
    await writeFileSynced(path.join(tmp, checked.weights), encodeSafetensors(tensorsFromLayers(layers, checked.surrogate), { format: "pt", kvzap: "profile weights" }));
    await writeFileSynced(path.join(tmp, MANIFEST_FILE), Buffer.from(formatManifest(checked)));
    if (existing) await rename(target, old);
    try {
      await rename(tmp, target);
    } catch (e) {
      if (existing) await rename(old, target);
      throw e;
    }
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  if (existing) await rm(old, { recursive: true, force: true });
  return { dir: target, manifestPath, manifest: checked, layers };
}

