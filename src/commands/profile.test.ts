import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { UserError } from "../base/errors.js";
import { fixtureModels, randomArray, rng } from "../../test/fixtures/profiles/random-profile.js";
import { readModelIdentity } from "../profiles/fingerprint.js";
import { loadProfile, validateProfile } from "../profiles/profile.js";
import { encodeSafetensors, type FloatDtype, type TensorToWrite } from "../profiles/safetensors.js";
import { checkProfile, importProfile, showProfile } from "./profile.js";

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kvzap-import-"));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

let n = 0;
const fresh = () => path.join(tmp, `d${n++}`);

// stories260K: 5 layers, embedding 64, 4 KV heads.
const D = 64;
const H = 4;
const L = 5;

/**
 * A folder as NVIDIA publishes KVzap surrogates on Hugging Face (kvpress KVzapModel.save_pretrained):
 * config.json with model_type "kvzap" and model.safetensors with `layers.{l}.…` tensors.
 */
function makeHfFolder(
  opts: { hidden?: number | null; dtype?: FloatDtype; prefix?: string; config?: Record<string, unknown>; drop?: string; seed?: number } = {},
) {
  const dir = fresh();
  fs.mkdirSync(dir);
  const hidden = opts.hidden ?? null;
  const config = {
    architectures: ["KVzapModel"],
    model_type: "kvzap",
    input_dim: D,
    output_dim: H,
    hidden_dim: hidden,
    n_modules: L,
    torch_dtype: "float32",
    transformers_version: "4.57.1",
    ...opts.config,
  };
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  const next = rng(opts.seed ?? 42);
  const tensors = new Map<string, TensorToWrite>();
  const prefix = opts.prefix ?? "layers";
  const add = (name: string, shape: number[]) =>
    tensors.set(name, {
      dtype: opts.dtype ?? "F32",
      shape,
      data: randomArray(
        shape.reduce((a, b) => a * b, 1),
        next,
      ),
    });
  for (let l = 0; l < L; l++) {
    if (hidden === null) {
      add(`${prefix}.${l}.weight`, [H, D]);
      add(`${prefix}.${l}.bias`, [H]);
    } else {
      add(`${prefix}.${l}.0.weight`, [hidden, D]);
      add(`${prefix}.${l}.0.bias`, [hidden]);
      add(`${prefix}.${l}.2.weight`, [H, hidden]);
      add(`${prefix}.${l}.2.bias`, [H]);
    }
  }
  if (opts.drop) tensors.delete(opts.drop);
  fs.writeFileSync(path.join(dir, "model.safetensors"), encodeSafetensors(tensors, { format: "pt" }));
  return { dir, tensors };
}

async function userError(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(UserError);
    return (e as Error).message;
  }
  throw new Error("expected a UserError");
}

describe("kvzap profile import", () => {
  it("converts a Linear checkpoint: loads, validates against the model, weights exact, τ −7, window 128", async () => {
    const hf = makeHfFolder();
    const out = fresh();
    const r = await importProfile({ hfDir: hf.dir, model: fixtureModels.stories, out });
    expect(r.sourceDtype).toBe("F32");
    const p = await loadProfile(out);
    validateProfile(p, await readModelIdentity(fixtureModels.stories));
    const m = p.manifest;
    expect(m).toMatchObject({
      format: "kvzap-profile",
      version: 1,
      name: path.basename(hf.dir),
      model: { architecture: "llama", layers: 5, embeddingSize: 64, kvHeads: 4, headDim: 8, file: "stories260K.gguf" },
      surrogate: { kind: "linear", inputDim: 64, outputDim: 4, hiddenDim: null, layers: 5 },
      tau: -7,
      window: 128,
      tauTable: [],
      weights: "weights.safetensors",
    });
    expect(m.provenance.tool).toBe("kvzap profile import 0.1.0");
    expect(m.provenance.source).toBe(path.resolve(hf.dir));
    expect(m.provenance.notes).toMatch(/sha256:[0-9a-f]{64}/);
    expect(Date.parse(m.provenance.created)).toBeGreaterThan(Date.parse("2025-01-01"));
    for (let l = 0; l < L; l++) {
      const layer = p.layers[l];
      if (layer.kind !== "linear") throw new Error("expected linear");
      expect(layer.weight).toEqual(hf.tensors.get(`layers.${l}.weight`)!.data);
      expect(layer.bias).toEqual(hf.tensors.get(`layers.${l}.bias`)!.data);
    }
    const checked = await checkProfile(out, fixtureModels.stories);
    expect(checked.model?.fingerprint).toBe(m.model.fingerprint);
  });

  it("converts a BF16 MLP checkpoint (hidden 8) to F32 with τ −4, and honours --tau, --window, --name", async () => {
    const hf = makeHfFolder({ hidden: 8, dtype: "BF16" });
    const out = fresh();
    const r = await importProfile({ hfDir: hf.dir, model: fixtureModels.stories, out, tau: -5.5, window: 32, name: "stories mlp" });
    expect(r.sourceDtype).toBe("BF16");
    const p = await loadProfile(out);
    expect(p.manifest).toMatchObject({ name: "stories mlp", tau: -5.5, window: 32, surrogate: { kind: "mlp", hiddenDim: 8 } });
    const layer = p.layers[3];
    if (layer.kind !== "mlp") throw new Error("expected mlp");
    expect(layer.hidden).toBe(8);
    expect(layer.w1).toHaveLength(8 * D);
    expect(layer.w2).toHaveLength(H * 8);
    // BF16 → F32 is exact: every value equals its BF16 rounding.
    const src = hf.tensors.get("layers.3.0.weight")!.data;
    for (let i = 0; i < 20; i++) expect(Math.abs(layer.w1[i] - src[i])).toBeLessThanOrEqual(Math.abs(src[i]) * 2 ** -8);
    const def = fresh();
    await importProfile({ hfDir: makeHfFolder({ hidden: 8 }).dir, model: fixtureModels.stories, out: def });
    expect((await loadProfile(def)).manifest.tau).toBe(-4);
    const details = await showProfile(def);
    expect(details.parameters).toBe(L * (8 * D + 8 + H * 8 + H));
    expect(details.layers).toHaveLength(L);
  });

  it("accepts the older kvpress tensor names (module_list.{l})", async () => {
    const hf = makeHfFolder({ prefix: "module_list" });
    const out = fresh();
    await importProfile({ hfDir: hf.dir, model: fixtureModels.stories, out });
    expect((await loadProfile(out)).layers).toHaveLength(L);
  });

  it("refuses a checkpoint for another model, naming the field", async () => {
    const hf = makeHfFolder();
    expect(await userError(importProfile({ hfDir: hf.dir, model: fixtureModels.testbed, out: fresh() }))).toBe(
      `the KVzap checkpoint ${hf.dir} does not fit ${fixtureModels.testbed}: its input_dim is 64, the model's embedding size is 512`,
    );
  });

  it("refuses malformed checkpoint folders with one clear message", async () => {
    const missing = fresh();
    expect(await userError(importProfile({ hfDir: missing, model: fixtureModels.stories, out: fresh() }))).toBe(
      `KVzap checkpoint folder not found: ${missing}`,
    );
    const noConfig = fresh();
    fs.mkdirSync(noConfig);
    expect(await userError(importProfile({ hfDir: noConfig, model: fixtureModels.stories, out: fresh() }))).toMatch(
      /is not a KVzap checkpoint folder: it has no config.json/,
    );
    const llama = makeHfFolder({ config: { model_type: "llama" } });
    expect(await userError(importProfile({ hfDir: llama.dir, model: fixtureModels.stories, out: fresh() }))).toMatch(
      /is not a KVzap config \(model_type is "llama", expected "kvzap"\)/,
    );
    const badDim = makeHfFolder({ config: { input_dim: "64" } });
    expect(await userError(importProfile({ hfDir: badDim.dir, model: fixtureModels.stories, out: fresh() }))).toMatch(
      /input_dim must be a positive whole number, got "64"/,
    );
    const dropped = makeHfFolder({ drop: "layers.2.bias" });
    expect(await userError(importProfile({ hfDir: dropped.dir, model: fixtureModels.stories, out: fresh() }))).toBe(
      `KVzap checkpoint ${path.join(dropped.dir, "model.safetensors")}: missing tensor layers.2.bias`,
    );
    const shape = makeHfFolder({ config: { output_dim: 2 } });
    expect(await userError(importProfile({ hfDir: shape.dir, model: fixtureModels.stories, out: fresh() }))).toMatch(
      /layers\.0\.weight has shape \[4, 64\], config.json says \[2, 64\]/,
    );
    const noWeights = makeHfFolder();
    fs.rmSync(path.join(noWeights.dir, "model.safetensors"));
    fs.writeFileSync(path.join(noWeights.dir, "pytorch_model.bin"), "x");
    expect(await userError(importProfile({ hfDir: noWeights.dir, model: fixtureModels.stories, out: fresh() }))).toMatch(
      /has no model.safetensors \(only pytorch_model.bin/,
    );
    const truncated = makeHfFolder();
    const w = path.join(truncated.dir, "model.safetensors");
    fs.writeFileSync(w, fs.readFileSync(w).subarray(0, 300));
    expect(await userError(importProfile({ hfDir: truncated.dir, model: fixtureModels.stories, out: fresh() }))).toMatch(
      /model.safetensors: not a safetensors file, or truncated: its header length \(\d+ bytes\) is more than the file holds \(300 bytes\)/,
    );
  });

  it("never writes over an existing --out", async () => {
    const hf = makeHfFolder();
    const out = fresh();
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, "keep.txt"), "x");
    expect(await userError(importProfile({ hfDir: hf.dir, model: fixtureModels.stories, out }))).toMatch(/is not a kvzap profile folder; choose another --out/);
    expect(fs.readdirSync(out)).toEqual(["keep.txt"]);
  });

  it("replaces an existing profile only with force, the same rule as calibrate --out", async () => {
    const hf = makeHfFolder();
    const out = fresh();
    await importProfile({ hfDir: hf.dir, model: fixtureModels.stories, out, tau: -5 });
    expect(await userError(importProfile({ hfDir: hf.dir, model: fixtureModels.stories, out, tau: -6 }))).toMatch(/already exists \(a profile\); pass --force/);
    expect((await loadProfile(out)).manifest.tau).toBe(-5);
    await importProfile({ hfDir: hf.dir, model: fixtureModels.stories, out, tau: -6, force: true });
    expect((await loadProfile(out)).manifest.tau).toBe(-6);
    expect(fs.existsSync(`${out}.lock`)).toBe(false);
  });
});
