import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UserError } from "../base/errors.js";
import { fixtureModels, makeManifest, randomLayers, randomProfile, shapes } from "../../test/fixtures/profiles/random-profile.js";
import { ProfileError } from "./errors.js";
import { modelFingerprint, readModelIdentity, type ModelIdentity } from "./fingerprint.js";
import { findProfileForModel, listProfiles } from "./find.js";
import { loadProfile, validateProfile, writeProfile, type Profile } from "./profile.js";
import { decodeSafetensors, encodeSafetensors } from "./safetensors.js";
import type { LayerWeights } from "./weights.js";

let tmp: string;
let storiesFp: string;
let testbedFp: string;
let stories: ModelIdentity;
let testbed: ModelIdentity;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kvzap-profile-"));
  [storiesFp, testbedFp] = await Promise.all([modelFingerprint(fixtureModels.stories), modelFingerprint(fixtureModels.testbed)]);
  stories = { ...shapes.stories, fingerprint: storiesFp };
  testbed = { ...shapes.testbed, fingerprint: testbedFp };
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let n = 0;
const fresh = () => path.join(tmp, `p${n++}`);

/** The ProfileError a promise rejects with (fails the test on success or another error type). */
async function profileError(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(ProfileError);
    expect(e).toBeInstanceOf(UserError);
    return (e as Error).message;
  }
  throw new Error("expected a ProfileError");
}

function expectSameLayers(a: LayerWeights[], b: LayerWeights[]): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    expect(a[i].kind).toBe(b[i].kind);
    for (const [k, v] of Object.entries(a[i])) {
      const w = (b[i] as unknown as Record<string, unknown>)[k];
      if (v instanceof Float32Array) {
        expect(w).toBeInstanceOf(Float32Array);
        // Exact bit equality, element by element.
        expect(Buffer.from((w as Float32Array).buffer, (w as Float32Array).byteOffset, (w as Float32Array).byteLength).equals(Buffer.from(v.buffer, v.byteOffset, v.byteLength))).toBe(true);
      } else expect(w).toEqual(v);
    }
  }
}

describe("model fingerprint", () => {
  it("is stable, 'sha256:' + 64 hex digits, and differs between the two fixture models", async () => {
    expect(storiesFp).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(testbedFp).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await modelFingerprint(fixtureModels.stories)).toBe(storiesFp);
    expect(testbedFp).not.toBe(storiesFp);
  });

  it("depends on the attn_norm weights, not on the file name", async () => {
    const copy = path.join(tmp, "copy.gguf");
    fs.copyFileSync(fixtureModels.stories, copy);
    expect(await modelFingerprint(copy)).toBe(storiesFp);
    // Flip one byte inside blk.0.attn_norm.weight: same names and shapes, another fingerprint.
    const { readGgufFileInfo } = await import("node-llama-cpp");
    const info = await readGgufFileInfo(copy, { logWarnings: false });
    const norm = info.tensorInfo!.find((t) => t.name === "blk.0.attn_norm.weight")!;
    const fd = fs.openSync(copy, "r+");
    fs.writeSync(fd, Buffer.from([0x7f]), 0, 1, Number(norm.fileOffset) + 5);
    fs.closeSync(fd);
    expect(await modelFingerprint(copy)).not.toBe(storiesFp);
  });

  it("ignores tensor types (a quantised copy matches) but not the attn_norm weights' type", async () => {
    // Patch the type field in the tensor-info header of a copy: name (u64 length + bytes), n_dims u32, dims u64 each, type u32.
    const retype = (name: string, type: number) => {
      const buf = fs.readFileSync(fixtureModels.stories);
      const key = Buffer.concat([Buffer.alloc(8), Buffer.from(name)]);
      key.writeBigUInt64LE(BigInt(name.length));
      const at = buf.indexOf(key);
      expect(at).toBeGreaterThan(0);
      const nDims = buf.readUInt32LE(at + key.length);
      buf.writeUInt32LE(type, at + key.length + 4 + 8 * nDims);
      const file = path.join(tmp, `retyped-${name}.gguf`);
      fs.writeFileSync(file, buf);
      return file;
    };
    const GGML_TYPE_Q8_0 = 8;
    expect(await modelFingerprint(retype("blk.0.attn_q.weight", GGML_TYPE_Q8_0))).toBe(storiesFp);
    expect(await modelFingerprint(retype("blk.0.attn_norm.weight", 1))).not.toBe(storiesFp);
  });

  it("a truncated or non-GGUF model file is a UserError naming it", async () => {
    const cut = path.join(tmp, "cut.gguf");
    fs.writeFileSync(cut, fs.readFileSync(fixtureModels.stories).subarray(0, 300_000));
    await expect(modelFingerprint(cut)).rejects.toThrow(new RegExp(`^the GGUF file is truncated: ${cut}`));
    const junk = path.join(tmp, "junk.gguf");
    fs.writeFileSync(junk, "definitely not a model");
    await expect(modelFingerprint(junk)).rejects.toThrow(`not a GGUF model file: ${junk} (it does not start with 'GGUF')`);
  });

  it("readModelIdentity gives the summary with the fingerprint; a missing model is a UserError", async () => {
    const id = await readModelIdentity(fixtureModels.testbed);
    const { file: _file, ...shape } = shapes.testbed;
    expect(id).toMatchObject({ ...shape, fingerprint: testbedFp, path: fixtureModels.testbed });
    await expect(modelFingerprint(path.join(tmp, "nope.gguf"))).rejects.toThrow(/model file not found/);
  });
});

describe("write → load round trip", () => {
  for (const kind of ["linear", "mlp"] as const) {
    it(`keeps ${kind} weights bit for bit and the manifest as written`, async () => {
      const { manifest, layers } = randomProfile("testbed", kind, "sha256:" + "a".repeat(64), kind === "linear" ? 7 : 8);
      const dir = fresh();
      const written = await writeProfile(dir, manifest, layers);
      expect(written.dir).toBe(path.resolve(dir));
      expect(fs.readdirSync(dir).sort()).toEqual(["profile.json", "weights.safetensors"]);
      expect(fs.readdirSync(tmp).filter((f) => f.startsWith("."))).toEqual([]);

      for (const p of [dir, path.join(dir, "profile.json")]) {
        const loaded = await loadProfile(p);
        expect(loaded.dir).toBe(path.resolve(dir));
        expect(loaded.manifestPath).toBe(path.join(path.resolve(dir), "profile.json"));
        expect(loaded.manifest).toEqual(manifest);
        expectSameLayers(loaded.layers, layers);
      }
      // The file uses NVIDIA's tensor names and F32.
      const st = decodeSafetensors(fs.readFileSync(path.join(dir, "weights.safetensors")));
      const names = [...st.tensors.keys()];
      expect(names).toContain(kind === "linear" ? "layers.7.weight" : "layers.7.2.bias");
      expect(st.tensors.get(kind === "linear" ? "layers.0.weight" : "layers.0.0.weight")!.shape).toEqual(kind === "linear" ? [2, 512] : [64, 512]);
      expect([...st.tensors.values()].every((t) => t.dtype === "F32")).toBe(true);
      // profile.json is readable: one τ-table row per line.
      expect(fs.readFileSync(path.join(dir, "profile.json"), "utf8")).toMatch(/\n {4}\{ "tau": -6, "keep": 0\.52, "compression": [\d.]+ \},\n/);
    });
  }

  it("replaces an existing profile atomically, and refuses to write over a folder that is not a profile", async () => {
    const dir = fresh();
    const a = randomProfile("stories", "linear", storiesFp, 1);
    const b = randomProfile("stories", "mlp", storiesFp, 2);
    await writeProfile(dir, a.manifest, a.layers);
    await writeProfile(dir, b.manifest, b.layers);
    const loaded = await loadProfile(dir);
    expect(loaded.manifest.surrogate.kind).toBe("mlp");
    expectSameLayers(loaded.layers, b.layers);
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith("."))).toEqual([]);

    const other = fresh();
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, "notes.txt"), "mine");
    expect(await profileError(writeProfile(other, a.manifest, a.layers))).toMatch(/exists and is not a kvzap profile folder/);
    expect(fs.readFileSync(path.join(other, "notes.txt"), "utf8")).toBe("mine");
  });

  it("refuses to write weights that disagree with the manifest or are not finite", async () => {
    const { manifest, layers } = randomProfile("stories", "linear", storiesFp);
    expect(await profileError(writeProfile(fresh(), manifest, layers.slice(1)))).toMatch(/4 layers of weights, the manifest says 5/);
    const bad = layers.map((l) => ({ ...l })) as LayerWeights[];
    (bad[2] as { weight: Float32Array }).weight = new Float32Array(10);
    expect(await profileError(writeProfile(fresh(), manifest, bad))).toMatch(/layers\.2\.weight holds 10 values, shape \[4, 64\] needs 256/);
    const nan = randomLayers("linear", 64, 4, 5);
    (nan[1] as { bias: Float32Array }).bias[3] = NaN;
    expect(await profileError(writeProfile(fresh(), manifest, nan))).toMatch(/layers\.1\.bias holds NaN at \[3\]/);
  });
});

describe("validation errors name the file and the problem", () => {
  let good: string;
  let goodMlp: string;
  beforeAll(async () => {
    good = fresh();
    const p = randomProfile("stories", "linear", "", 3);
    p.manifest.model.fingerprint = storiesFp;
    await writeProfile(good, p.manifest, p.layers);
    goodMlp = fresh();
    const q = randomProfile("stories", "mlp", storiesFp, 4);
    await writeProfile(goodMlp, q.manifest, q.layers);
  });

  /** A copy of the good profile to break. */
  function copyOf(src = good): string {
    const dir = fresh();
    fs.cpSync(src, dir, { recursive: true });
    return dir;
  }
  const manifestOf = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, "profile.json"), "utf8"));
  const writeManifest = (dir: string, m: unknown) => fs.writeFileSync(path.join(dir, "profile.json"), JSON.stringify(m));

  it("a good profile loads and validates against its model", async () => {
    validateProfile(await loadProfile(good), stories);
    validateProfile(await loadProfile(goodMlp), stories);
  });

  it("not found, a folder without profile.json", async () => {
    expect(await profileError(loadProfile(path.join(tmp, "missing")))).toBe(`profile not found: ${path.join(tmp, "missing")}`);
    const empty = fresh();
    fs.mkdirSync(empty);
    expect(await profileError(loadProfile(empty))).toBe(`not a kvzap profile: ${empty} has no profile.json`);
  });

  it("manifest not JSON, wrong format, wrong version, missing fields", async () => {
    const d = copyOf();
    const file = path.join(d, "profile.json");
    fs.writeFileSync(file, "{ not json");
    expect(await profileError(loadProfile(d))).toMatch(new RegExp(`^profile ${file} is not valid JSON`));
    writeManifest(d, { ...manifestOf(good), format: "gguf" });
    expect(await profileError(loadProfile(d))).toBe(`profile ${file}: not a kvzap profile manifest (format is "gguf", expected "kvzap-profile")`);
    writeManifest(d, { ...manifestOf(good), version: 2 });
    expect(await profileError(loadProfile(d))).toMatch(/manifest version 2 was written by a newer kvzap/);
    const { tau: _tau, ...noTau } = manifestOf(good);
    writeManifest(d, noTau);
    expect(await profileError(loadProfile(d))).toBe(`profile ${file}: tau is missing`);
    const m = manifestOf(good);
    delete m.model.kvHeads;
    writeManifest(d, m);
    expect(await profileError(loadProfile(d))).toBe(`profile ${file}: model.kvHeads is missing`);
    writeManifest(d, { ...manifestOf(good), window: -1 });
    expect(await profileError(loadProfile(d))).toMatch(/window must be a whole number ≥ 0, got -1/);
    writeManifest(d, { ...manifestOf(good), tauTable: [{ tau: -6, keep: 0.4, compression: 2.5 }, { tau: -4, keep: 0.6, compression: 1.67 }] });
    expect(await profileError(loadProfile(d))).toMatch(/tauTable is not monotone/);
  });

  it("weights missing, truncated, random bytes", async () => {
    const d = copyOf();
    const w = path.join(d, "weights.safetensors");
    const bytes = fs.readFileSync(w);
    fs.rmSync(w);
    expect(await profileError(loadProfile(d))).toBe(`profile ${path.join(d, "profile.json")}: its weights file ${w} is missing`);
    fs.writeFileSync(w, bytes.subarray(0, bytes.length - 100));
    expect(await profileError(loadProfile(d))).toMatch(new RegExp(`^profile weights ${w}: truncated: its header puts tensor data up to byte \\d+ but the file holds \\d+ bytes$`));
    fs.writeFileSync(w, bytes.subarray(0, 6));
    expect(await profileError(loadProfile(d))).toMatch(/fewer than the 8-byte header length/);
    const random = Buffer.alloc(5000);
    for (let i = 0; i < random.length; i++) random[i] = Math.floor(Math.random() * 256);
    fs.writeFileSync(w, random);
    expect(await profileError(loadProfile(d))).toMatch(new RegExp(`^profile weights ${w}: not a safetensors file`));
    // A plausible small header length over bytes that are not JSON.
    random.writeBigUInt64LE(64n, 0);
    random.fill(0xfe, 8, 72);
    fs.writeFileSync(w, random);
    expect(await profileError(loadProfile(d))).toBe(`profile weights ${w}: not a safetensors file: its header is not JSON`);
  });

  it("NaN and Inf weights", async () => {
    const d = copyOf();
    const w = path.join(d, "weights.safetensors");
    const st = decodeSafetensors(fs.readFileSync(w));
    st.tensors.get("layers.3.weight")!.data[64 + 5] = NaN;
    fs.writeFileSync(w, encodeSafetensors(st.tensors, st.metadata));
    expect(await profileError(loadProfile(d))).toBe(`profile weights ${w}: layers.3.weight holds NaN at [1, 5]; every weight must be finite`);
    st.tensors.get("layers.3.weight")!.data[64 + 5] = 0;
    st.tensors.get("layers.0.bias")!.data[0] = -Infinity;
    fs.writeFileSync(w, encodeSafetensors(st.tensors, st.metadata));
    expect(await profileError(loadProfile(d))).toMatch(/layers\.0\.bias holds -Infinity at \[0\]/);
  });

  it("weights whose shapes differ from the manifest, missing or extra tensors", async () => {
    // The manifest claims the testbed's shapes, the weights are stories260K's.
    const d = copyOf();
    writeManifest(d, makeManifest("testbed", "linear", storiesFp));
    expect(await profileError(loadProfile(d))).toMatch(/layers\.5\.weight, layers\.5\.bias, layers\.6\.weight, layers\.6\.bias and 2 more/);
    const m = manifestOf(good);
    m.model.kvHeads = 2;
    m.surrogate.outputDim = 2;
    writeManifest(d, m);
    expect(await profileError(loadProfile(d))).toBe(`profile weights ${path.join(d, "weights.safetensors")}: layers.0.weight has shape [4, 64], the manifest says [2, 64]`);
    // An MLP manifest over linear weights.
    const mm = manifestOf(goodMlp);
    writeManifest(d, mm);
    expect(await profileError(loadProfile(d))).toMatch(/missing tensors layers\.0\.0\.weight.*is it a mlp surrogate\?/);
    // Extra tensors.
    const e = copyOf();
    const w = path.join(e, "weights.safetensors");
    const st = decodeSafetensors(fs.readFileSync(w));
    st.tensors.set("layers.5.weight", { dtype: "F32", shape: [4, 64], data: new Float32Array(256) });
    fs.writeFileSync(w, encodeSafetensors(st.tensors));
    expect(await profileError(loadProfile(e))).toMatch(/unexpected tensor layers\.5\.weight, which the manifest does not declare/);
  });

  it("kind and hidden dims inconsistent in the manifest", async () => {
    const d = copyOf();
    const file = path.join(d, "profile.json");
    const m = manifestOf(good);
    writeManifest(d, { ...m, surrogate: { ...m.surrogate, hiddenDim: 8 } });
    expect(await profileError(loadProfile(d))).toBe(`profile ${file}: surrogate.hiddenDim must be null for a linear surrogate, got 8`);
    writeManifest(d, { ...m, surrogate: { ...m.surrogate, kind: "mlp", hiddenDim: null } });
    expect(await profileError(loadProfile(d))).toBe(`profile ${file}: surrogate.hiddenDim must be a whole number for an MLP surrogate, got null`);
    writeManifest(d, { ...m, surrogate: { ...m.surrogate, kind: "transformer" } });
    expect(await profileError(loadProfile(d))).toMatch(/surrogate\.kind must be "linear" or "mlp", got "transformer"/);
    writeManifest(d, { ...m, surrogate: { ...m.surrogate, inputDim: 512 } });
    expect(await profileError(loadProfile(d))).toBe(`profile ${file}: surrogate.inputDim (512) differs from model.embeddingSize (64)`);
    const mm = manifestOf(goodMlp);
    const h = copyOf(goodMlp);
    writeManifest(h, { ...mm, surrogate: { ...mm.surrogate, hiddenDim: 16 } });
    expect(await profileError(loadProfile(h))).toMatch(/layers\.0\.0\.weight has shape \[8, 64\], the manifest says \[16, 64\]/);
  });

  it("a profile for the other model: names the field that differs, or the fingerprint", async () => {
    const p = await loadProfile(good);
    const file = p.manifestPath;
    expect(await profileError(() => validateProfile(p, testbed))).toBe(`profile ${file} is for a model with 5 layers, this model has 8`);
    expect(await profileError(() => validateProfile(p, { ...stories, embeddingSize: 128 }))).toBe(`profile ${file} is for a model with embedding size 64, this model has 128`);
    expect(await profileError(() => validateProfile(p, { ...stories, kvHeads: 2 }))).toBe(`profile ${file} is for a model with 4 KV heads, this model has 2`);
    expect(await profileError(() => validateProfile(p, { ...stories, architecture: "qwen3" }))).toBe(`profile ${file} is for a llama model, this model is qwen3`);
    const msg = await profileError(() => validateProfile(p, { ...stories, fingerprint: testbedFp }));
    expect(msg).toBe(`profile ${file} was made for another model (fingerprint ${storiesFp.slice(0, 19)}…, stories260K.gguf; this model's is ${testbedFp.slice(0, 19)}…); calibrate one with kvzap calibrate`);
    validateProfile(p, { ...stories, fingerprint: testbedFp }, { checkFingerprint: false });
  });
});

describe("finding a model's profile", () => {
  let root: string;
  let user: string;
  let shipped: string;
  beforeAll(async () => {
    root = fresh();
    user = path.join(root, "user");
    shipped = path.join(root, "shipped");
    const w = async (dir: string, model: "stories" | "testbed", kind: "linear" | "mlp", fp: string, created = "2026-01-01T00:00:00.000Z") => {
      const p = randomProfile(model, kind, fp);
      p.manifest.name = path.basename(dir);
      p.manifest.provenance.created = created;
      await writeProfile(dir, p.manifest, p.layers);
    };
    await w(path.join(shipped, "stories-linear"), "stories", "linear", storiesFp);
    await w(path.join(shipped, "stories-mlp"), "stories", "mlp", storiesFp);
    await w(path.join(shipped, "testbed-linear"), "testbed", "linear", testbedFp);
    await w(path.join(user, "stories-linear-mine"), "stories", "linear", storiesFp, "2026-02-01T00:00:00.000Z");
    await w(path.join(user, "stories-lookalike"), "stories", "linear", "sha256:" + "0".repeat(64));
    fs.mkdirSync(path.join(user, "broken"));
    fs.writeFileSync(path.join(user, "broken", "profile.json"), "[]");
    fs.mkdirSync(path.join(user, "not-a-profile"));
  });

  it("lists profile folders in order, with broken manifests reported, not thrown", async () => {
    const entries = await listProfiles([{ dir: shipped, source: "shipped" }, { dir: user, source: "user" }, path.join(root, "nowhere")]);
    expect(entries.map((e) => [path.basename(e.dir), e.source, e.manifest?.name ?? null])).toEqual([
      ["stories-linear", "shipped", "stories-linear"],
      ["stories-mlp", "shipped", "stories-mlp"],
      ["testbed-linear", "shipped", "testbed-linear"],
      ["broken", "user", null],
      ["stories-linear-mine", "user", "stories-linear-mine"],
      ["stories-lookalike", "user", "stories-lookalike"],
    ]);
    expect(entries[3].error).toMatch(/not a kvzap profile manifest/);
  });

  it("matches by shape and fingerprint, prefers the first folder, and a requested kind", async () => {
    const name = (p: Profile | null) => (p ? path.basename(p.dir) : null);
    expect(name(await findProfileForModel(shapes.stories, storiesFp, [user, shipped]))).toBe("stories-linear-mine");
    expect(name(await findProfileForModel(shapes.stories, storiesFp, [shipped, user]))).toBe("stories-linear");
    expect(name(await findProfileForModel(shapes.stories, storiesFp, [user, shipped], { kind: "mlp" }))).toBe("stories-mlp");
    expect(name(await findProfileForModel(shapes.testbed, testbedFp, [user, shipped], { kind: "mlp" }))).toBe("testbed-linear");
    expect(await findProfileForModel(shapes.testbed, storiesFp, [user, shipped])).toBeNull();
    expect(await findProfileForModel(shapes.stories, "sha256:" + "1".repeat(64), [user, shipped])).toBeNull();
    const found = await findProfileForModel(shapes.testbed, testbedFp, [shipped]);
    expect(found!.layers).toHaveLength(8);
  });

  it("skips a matching profile whose weights do not load, with one line naming it, and takes the next", async () => {
    const corrupt = path.join(root, "corrupt-user");
    const p = randomProfile("stories", "linear", storiesFp);
    p.manifest.name = "stories-corrupt";
    p.manifest.provenance.created = "2026-03-01T00:00:00.000Z";
    await writeProfile(path.join(corrupt, "stories-corrupt"), p.manifest, p.layers);
    const weights = path.join(corrupt, "stories-corrupt", "weights.safetensors");
    fs.truncateSync(weights, Math.floor(fs.statSync(weights).size / 2));
    const warnings: string[] = [];
    const found = await findProfileForModel(shapes.stories, storiesFp, [corrupt, shipped], { onSkipped: (w) => warnings.push(w) });
    expect(path.basename(found!.dir)).toBe("stories-linear");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(new RegExp(`^skipping the profile ${path.join(corrupt, "stories-corrupt")} for this model: .*; using ${path.join(shipped, "stories-linear")}$`));
    // Nothing else fits: null (the caller falls back to the full cache), still with the warning.
    const alone: string[] = [];
    expect(await findProfileForModel(shapes.stories, storiesFp, [corrupt], { onSkipped: (w) => alone.push(w) })).toBeNull();
    expect(alone[0]).toMatch(/; no other profile fits this model$/);
    // A broken manifest is named too.
    const broken: string[] = [];
    await findProfileForModel(shapes.testbed, testbedFp, [user], { onSkipped: (w) => broken.push(w) });
    expect(broken).toEqual([expect.stringMatching(new RegExp(`^skipping the profile ${path.join(user, "broken", "profile.json")}: `))]);
  });
});
