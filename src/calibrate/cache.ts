// The oracle's pairs on disk, under `<out>.cache/`: one binary file per prompt per layer (row-major float32, each row
// the attn_norm row x then log s⁺ per KV head) and index.json naming the prompts done and the settings they were
// computed with. A prompt enters the index only after all its layers are written, so a killed run loses at most the
// prompt it was working on; a cache made with other settings is discarded, never mixed in.
import { mkdir, readFile, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { UserError } from "../base/errors.js";
import type { CalibrationPrompt } from "./data.js";
import { tempWriter, writeFileAtomic } from "../base/files.js";

export const CACHE_FORMAT = "kvzap-oracle-cache";
export const CACHE_VERSION = 1;
export const INDEX_FILE = "index.json";

/** A prompt's training pairs, per layer: x [n][D], y [n][H]. */
export interface PromptPairs {
  n: number;
  x: Float32Array[];
  y: Float32Array[];
}

/** What the pairs depend on besides the prompt's text: a change in any of them invalidates the cache. */
export interface CacheSettings {
  model: string;
  layers: number;
  embeddingSize: number;
  kvHeads: number;
  samplesPerPrompt: number;
  repeatChunk: number;
  seed: number;
  /** The repeat layout's tokens, joined: another template or instruction makes other scores. */
  layout: string;
}

export interface CacheEntry {
  file: string;
  tokens: number;
  samples: number;
  created: string;
}

interface Index {
  format: typeof CACHE_FORMAT;
  version: typeof CACHE_VERSION;
  settings: CacheSettings;
  prompts: Record<string, CacheEntry>;
}

function sameSettings(a: CacheSettings, b: CacheSettings): boolean {
  return JSON.stringify(a, Object.keys(a).sort()) === JSON.stringify(b, Object.keys(b).sort());
}

export class OracleCache {
  private constructor(
    readonly dir: string,
    private index: Index,
    /** Why an existing cache was discarded, if it was. */
    readonly discarded: string | null,
  ) {}

  /** Opens (creating if needed) the cache folder; a cache of other settings or an unreadable index starts over. */
  static async open(dir: string, settings: CacheSettings): Promise<OracleCache> {
    const st = await stat(dir).catch(() => null);
    if (st && !st.isDirectory()) throw new UserError(`the oracle cache ${dir} exists and is not a folder; remove it or choose another --out`);
    let discarded: string | null = null;
    let index: Index | null = null;
    if (st) {
      try {
        const raw = JSON.parse(await readFile(path.join(dir, INDEX_FILE), "utf8")) as Index;
        if (raw.format !== CACHE_FORMAT || raw.version !== CACHE_VERSION || typeof raw.prompts !== "object")
          discarded = "its index is not a kvzap oracle cache";
        else if (!sameSettings(raw.settings, settings)) discarded = "it was made with other settings (model, seed or sampling)";
        else index = raw;
      } catch (e) {
        const missing = (e as NodeJS.ErrnoException).code === "ENOENT";
        if (!missing) discarded = "its index is unreadable";
      }
      // Only our own files go: temp files a killed run left, and with a stale index the pair files and the index.
      for (const name of await readdir(dir)) {
        if (tempWriter(name) !== null || (!index && /\.f32$|^index\.json$/.test(name))) await rm(path.join(dir, name), { force: true });
      }
    }
    await mkdir(dir, { recursive: true });
    const cache = new OracleCache(dir, index ?? { format: CACHE_FORMAT, version: CACHE_VERSION, settings, prompts: {} }, discarded);
    if (!index) await cache.writeIndex();
    return cache;
  }

  get settings(): CacheSettings {
    return this.index.settings;
  }

  get size(): number {
    return Object.keys(this.index.prompts).length;
  }

  has(id: string): boolean {
    return id in this.index.prompts;
  }

  entry(id: string): CacheEntry | undefined {
    return this.index.prompts[id];
  }

  private layerFile(id: string, layer: number): string {
    return path.join(this.dir, `${id}-l${layer}.f32`);
  }

  async put(prompt: CalibrationPrompt, pairs: PromptPairs): Promise<void> {
    const { embeddingSize: D, kvHeads: H, layers } = this.index.settings;
    for (let l = 0; l < layers; l++) {
      const rows = new Float32Array(pairs.n * (D + H));
      for (let s = 0; s < pairs.n; s++) {
        rows.set(pairs.x[l].subarray(s * D, (s + 1) * D), s * (D + H));
        rows.set(pairs.y[l].subarray(s * H, (s + 1) * H), s * (D + H) + D);
      }
      await writeFileAtomic(this.layerFile(prompt.id, l), new Uint8Array(rows.buffer));
    }
    this.index.prompts[prompt.id] = { file: prompt.file, tokens: prompt.tokens.length, samples: pairs.n, created: new Date().toISOString() };
    await this.writeIndex();
  }

  /** One layer's pairs of the given prompts, concatenated in their order. */
  async layer(ids: readonly string[], layer: number): Promise<{ x: Float32Array; y: Float32Array; n: number }> {
    const { embeddingSize: D, kvHeads: H } = this.index.settings;
    const counts = ids.map((id) => {
      const e = this.index.prompts[id];
      if (!e) throw new Error(`prompt ${id} is not in the oracle cache`);
      return e.samples;
    });
    const n = counts.reduce((a, b) => a + b, 0);
    const x = new Float32Array(n * D);
    const y = new Float32Array(n * H);
    let at = 0;
    for (let k = 0; k < ids.length; k++) {
      const file = this.layerFile(ids[k], layer);
      const buf = await readFile(file);
      if (buf.length !== counts[k] * (D + H) * 4) {
        throw new UserError(
          `the oracle cache file ${file} is damaged (${buf.length} bytes, expected ${counts[k] * (D + H) * 4}); delete ${this.dir} and run again`,
        );
      }
      const rows = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
      for (let s = 0; s < counts[k]; s++, at++) {
        x.set(rows.subarray(s * (D + H), s * (D + H) + D), at * D);
        y.set(rows.subarray(s * (D + H) + D, (s + 1) * (D + H)), at * H);
      }
    }
    return { x, y, n };
  }

  private async writeIndex(): Promise<void> {
    await writeFileAtomic(path.join(this.dir, INDEX_FILE), Buffer.from(JSON.stringify(this.index, null, 1) + "\n"));
  }
}
