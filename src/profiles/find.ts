// Where profiles live and which one fits a model: the shipped `profiles/` folder and `<cacheDir>/profiles`.
import { readdir } from "node:fs/promises";
import path from "node:path";
import { projectRoot } from "../base/paths.js";
import type { ModelSummary } from "../engine/gguf.js";
import { resolveSetting } from "../settings/index.js";
import { MANIFEST_FILE, type ProfileManifest, type SurrogateKind } from "./manifest.js";
import { loadProfile, readManifest, validateProfile, type Profile } from "./profile.js";

export type ProfileSource = "shipped" | "user" | "other";

export interface ProfileDir {
  dir: string;
  source: ProfileSource;
}

/** The profiles that ship with kvzap (`<repo>/profiles`). */
export const shippedProfilesDir = path.join(projectRoot, "profiles");

/** The user's own profiles (`<cacheDir>/profiles`), where calibrate and import put them by convention. */
export function userProfilesDir(cacheDirFlag?: string): string {
  return path.join(resolveSetting("cacheDir", cacheDirFlag).value, "profiles");
}

/** Folders searched for profiles, in order of preference: the user's own first, then the shipped ones. */
export function profileSearchDirs(cacheDirFlag?: string): ProfileDir[] {
  return [
    { dir: userProfilesDir(cacheDirFlag), source: "user" },
    { dir: shippedProfilesDir, source: "shipped" },
  ];
}

export interface ProfileEntry {
  dir: string;
  manifestPath: string;
  source: ProfileSource;
  /** null when the manifest does not parse; `error` says why. */
  manifest: ProfileManifest | null;
  error?: string;
}

/**
 * Every profile folder (a subfolder with a profile.json) directly under the given folders, sorted by folder name
 * within each; missing folders are skipped, malformed manifests listed with their error. Weights are not read.
 */
export async function listProfiles(dirs: (ProfileDir | string)[]): Promise<ProfileEntry[]> {
  const out: ProfileEntry[] = [];
  for (const d of dirs) {
    const { dir, source } = typeof d === "string" ? { dir: d, source: "other" as const } : d;
    let names: string[];
    try {
      names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory() && !e.name.startsWith(".")).map((e) => e.name);
    } catch {
      continue;
    }
    for (const name of names.sort()) {
      const profileDir = path.join(dir, name);
      const manifestPath = path.join(profileDir, MANIFEST_FILE);
      let files: string[];
      try {
        files = await readdir(profileDir);
      } catch {
        continue;
      }
      if (!files.includes(MANIFEST_FILE)) continue;
      try {
        out.push({ dir: profileDir, manifestPath, source, manifest: await readManifest(manifestPath) });
      } catch (e) {
        out.push({ dir: profileDir, manifestPath, source, manifest: null, error: e instanceof Error ? e.message : String(e) });
      }
    }
  }
  return out;
}

/**
 * The profile for this model (same shape and fingerprint), loaded with its weights, or null when there is none.
 * With `kind`, a profile of that kind is preferred; otherwise (and among equals) the first folder in `dirs` wins,
 * then the newest. A profile that cannot be used (a manifest that does not parse, weights that do not load) is
 * skipped with one line to `onSkipped` naming its file, and the next candidate is taken: one corrupt profile must
 * not stop a model from running. (A profile given explicitly is loaded by the caller, and fails hard.)
 */
export async function findProfileForModel(
  summary: Pick<ModelSummary, "architecture" | "layers" | "embeddingSize" | "kvHeads" | "headDim">,
  fingerprint: string,
  dirs: (ProfileDir | string)[] = profileSearchDirs(),
  options: { kind?: SurrogateKind; onSkipped?: (warning: string) => void } = {},
): Promise<Profile | null> {
  const warn = options.onSkipped ?? ((w: string) => process.stderr.write(`kvzap: warning: ${w}\n`));
  const model = { ...summary, fingerprint };
  const entries = await listProfiles(dirs);
  const skipped: string[] = entries.filter((e) => !e.manifest).map((e) => `skipping the profile ${e.manifestPath}: ${firstLine(e.error)}`);
  const matches = entries.filter((e) => {
    if (!e.manifest) return false;
    try {
      validateProfile({ manifestPath: e.manifestPath, manifest: e.manifest }, model);
      return true;
    } catch {
      return false;
    }
  });
  const rank = (e: ProfileEntry, i: number) => [options.kind && e.manifest!.surrogate.kind !== options.kind ? 1 : 0, dirIndex(dirs, e), -Date.parse(e.manifest!.provenance.created) || 0, i];
  const ranked = matches.map((e, i) => ({ e, r: rank(e, i) })).sort((a, b) => compareTuples(a.r, b.r));
  let found: Profile | null = null;
  const failed: string[] = [];
  for (const { e } of ranked) {
    try {
      found = await loadProfile(e.dir);
      break;
    } catch (err) {
      failed.push(`skipping the profile ${e.dir} for this model: ${firstLine(err instanceof Error ? err.message : String(err))}`);
    }
  }
  const then = found ? `; using ${found.dir}` : "; no other profile fits this model";
  for (const w of skipped) warn(w);
  for (const w of failed) warn(w + then);
  return found;
}

function firstLine(text: string | undefined): string {
  return (text ?? "unreadable").split("\n")[0];
}

function dirIndex(dirs: (ProfileDir | string)[], e: ProfileEntry): number {
  const parent = path.dirname(e.dir);
  return dirs.findIndex((d) => path.resolve(typeof d === "string" ? d : d.dir) === path.resolve(parent));
}

function compareTuples(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}
