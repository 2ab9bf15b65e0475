import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { fixtureModels, randomProfile } from "../../test/fixtures/profiles/random-profile.js";
import { modelFingerprint } from "../profiles/fingerprint.js";
import { writeProfile } from "../profiles/profile.js";
import { encodeSafetensors, type TensorToWrite } from "../profiles/safetensors.js";
import { main } from "./profile.js";
import { captureCommands, runMain } from "../../test/helpers/in-process.js";

let tmp: string;
let cacheDir: string;
let profileDir: string;
let hfDir: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kvzap-profile-cli-"));
  cacheDir = path.join(tmp, "cache");
  profileDir = path.join(cacheDir, "profiles", "stories-linear");
  const p = randomProfile("stories", "linear", await modelFingerprint(fixtureModels.stories));
  p.manifest.name = "stories linear (test)";
  await writeProfile(profileDir, p.manifest, p.layers);
  // A minimal NVIDIA-style checkpoint for stories260K (5 layers, D 64, 4 KV heads).
  hfDir = path.join(tmp, "KVzap-linear-stories260K");
  fs.mkdirSync(hfDir);
  fs.writeFileSync(path.join(hfDir, "config.json"), JSON.stringify({ model_type: "kvzap", input_dim: 64, output_dim: 4, hidden_dim: null, n_modules: 5 }));
  const tensors = new Map<string, TensorToWrite>();
  for (let l = 0; l < 5; l++) {
    tensors.set(`layers.${l}.weight`, { shape: [4, 64], data: new Float32Array(256).fill(0.01 * l) });
    tensors.set(`layers.${l}.bias`, { shape: [4], data: new Float32Array([-6, -5, -4, -3]) });
  }
  fs.writeFileSync(path.join(hfDir, "model.safetensors"), encodeSafetensors(tensors));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const io = captureCommands(() => path.join(tmp, "config"));
beforeEach(() => vi.stubEnv("KVZAP_CACHE_DIR", cacheDir));

/** What the dispatcher in main.ts does with a command: the exit code, thrown errors mapped to theirs. */
const kvzapProfile = (...argv: string[]) => runMain(main, argv);

describe("kvzap profile", () => {
  it("--help and no subcommand", async () => {
    expect(await kvzapProfile("--help")).toEqual({ code: 0 });
    expect(io.stdout).toMatch(/^usage: kvzap profile import HF_DIR --model GGUF --out PATH/);
    expect(await kvzapProfile()).toEqual({ code: 2, message: "a subcommand is required: import, show, list, validate" });
    expect(await kvzapProfile("frobnicate")).toEqual({ code: 2, message: "unknown subcommand 'frobnicate'; use one of import, show, list, validate" });
  });

  it("show: model, kind, τ, τ table, provenance, per-layer weight statistics", async () => {
    expect(await kvzapProfile("show", profileDir)).toEqual({ code: 0 });
    expect(io.stdout).toContain(`profile      stories linear (test) (${path.join(profileDir, "profile.json")})`);
    expect(io.stdout).toMatch(/model {8}llama, 5 layers, embedding 64, 4 KV heads × 8, from stories260K.gguf/);
    expect(io.stdout).toMatch(/surrogate {4}linear, 64 → 4 per layer, 1\.3K parameters, 5\.\d+ KiB/);
    expect(io.stdout).toMatch(/tau {10}-7 \(keeps \d+\.\d%, \d\.\d\dx\)/);
    expect(io.stdout).toMatch(/τ table:\n\s+τ\s+keep\s+compression\n\s+-8\s+90\.0%\s+1\.11x\n/);
    expect(io.stdout).toMatch(/made by {6}kvzap test, 2026-01-01T00:00:00.000Z/);
    expect(io.stdout).toMatch(/weights per layer:\n\s+layer\s+weight rms\s+max \|w\|\s+bias mean\s+bias range\n\s+0\s+0\.0\d+/);
    io.stdout = "";
    expect(await kvzapProfile("show", path.join(profileDir, "profile.json"), "--json")).toEqual({ code: 0 });
    const j = JSON.parse(io.stdout);
    expect(j.manifest.name).toBe("stories linear (test)");
    expect(j.parameters).toBe(5 * (4 * 64 + 4));
    expect(j.layers).toHaveLength(5);
  });

  it("show: a missing profile is exit 1 with the path; a missing PATH is exit 2", async () => {
    const missing = path.join(tmp, "nope");
    expect(await kvzapProfile("show", missing)).toEqual({ code: 1, message: `profile not found: ${missing}` });
    expect(await kvzapProfile("show")).toEqual({ code: 2, message: "show needs PATH" });
    expect(await kvzapProfile("show", "a", "b")).toEqual({ code: 2, message: "show takes PATH, got 'a' 'b'" });
  });

  it("list: the user's profiles from <cacheDir>/profiles (and any shipped ones)", async () => {
    expect(await kvzapProfile("list")).toEqual({ code: 0 });
    expect(io.stdout).toMatch(/^NAME\s+KIND\s+MODEL\s+TAU\s+SOURCE\s+PATH\n/);
    expect(io.stdout).toMatch(
      new RegExp(`stories linear \\(test\\)\\s+linear\\s+stories260K.gguf\\s+-7\\s+user\\s+${profileDir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`),
    );
    io.stdout = "";
    expect(await kvzapProfile("list", "--json")).toEqual({ code: 0 });
    const user = JSON.parse(io.stdout).filter((e: { source: string }) => e.source === "user");
    expect(user).toEqual([expect.objectContaining({ name: "stories linear (test)", kind: "linear", tau: -7, window: 128, dir: profileDir })]);
    vi.stubEnv("KVZAP_CACHE_DIR", path.join(tmp, "empty-cache"));
    io.stdout = "";
    expect(await kvzapProfile("list", "--json")).toEqual({ code: 0 });
    expect(JSON.parse(io.stdout).filter((e: { source: string }) => e.source === "user")).toEqual([]);
    expect(await kvzapProfile("list", "extra")).toMatchObject({ code: 2 });
  });

  it("validate: ok with and without the model; another model is exit 1 naming the field", async () => {
    expect(await kvzapProfile("validate", profileDir)).toEqual({ code: 0 });
    expect(io.stdout).toBe(`ok: stories linear (test) (linear, 5 layers, τ -7) at ${path.join(profileDir, "profile.json")}\n`);
    io.stdout = "";
    expect(await kvzapProfile("validate", profileDir, "--model", fixtureModels.stories)).toEqual({ code: 0 });
    expect(io.stdout).toMatch(/^ok: .* fits .*stories260K.gguf\n$/);
    expect(await kvzapProfile("validate", profileDir, "--model", fixtureModels.testbed)).toEqual({
      code: 1,
      message: `profile ${path.join(profileDir, "profile.json")} is for a model with 5 layers, this model has 8`,
    });
    const broken = path.join(tmp, "broken");
    fs.cpSync(profileDir, broken, { recursive: true });
    fs.writeFileSync(path.join(broken, "weights.safetensors"), "garbage, not safetensors at all");
    const r = await kvzapProfile("validate", broken);
    expect(r.code).toBe(1);
    expect(r.message).toMatch(/^profile weights .*broken\/weights.safetensors: not a safetensors file/);
    expect(await kvzapProfile("validate", profileDir, "--model", path.join(tmp, "missing.gguf"))).toEqual({
      code: 1,
      message: `model file not found: ${path.join(tmp, "missing.gguf")}`,
    });
  });

  it("import: converts, with a negative --tau as a separate argument", async () => {
    const out = path.join(tmp, "imported");
    expect(await kvzapProfile("import", hfDir, "--model", fixtureModels.stories, "--out", out, "--tau", "-6.5", "--window", "64")).toEqual({ code: 0 });
    expect(io.stdout).toBe(`imported linear surrogate (5 layers, F32 → F32) for stories260K.gguf\nprofile ${out}: τ -6.5, window 64\n`);
    const m = JSON.parse(fs.readFileSync(path.join(out, "profile.json"), "utf8"));
    expect(m).toMatchObject({ name: "KVzap-linear-stories260K", tau: -6.5, window: 64 });
    io.stdout = "";
    expect(await kvzapProfile("validate", out, "--model", fixtureModels.stories)).toEqual({ code: 0 });
    // Again onto the same --out: refused, nothing changed.
    expect(await kvzapProfile("import", hfDir, "--model", fixtureModels.stories, "--out", out)).toMatchObject({
      code: 1,
      message: expect.stringMatching(/already exists/),
    });
  });

  it("import: bad input is a usage error (exit 2) naming it", async () => {
    const out = path.join(tmp, "never");
    expect(await kvzapProfile("import", hfDir, "--model", fixtureModels.stories, "--out", out, "--tau", "abc")).toEqual({
      code: 2,
      message: "--tau must be a number, got 'abc'",
    });
    expect(await kvzapProfile("import", hfDir, "--model", fixtureModels.stories, "--out", out, "--window", "-3")).toEqual({
      code: 2,
      message: "--window must be at least 0, got -3",
    });
    expect(await kvzapProfile("import", "--model", fixtureModels.stories, "--out", out)).toEqual({ code: 2, message: "import needs HF_DIR" });
    expect(await kvzapProfile("import", hfDir, "--out", out)).toEqual({
      code: 2,
      message: "import needs --model GGUF (the model the KVzap weights were trained for)",
    });
    expect(await kvzapProfile("import", hfDir, "--model", fixtureModels.stories)).toEqual({
      code: 2,
      message: "import needs --out PATH (the profile folder to create)",
    });
    expect(await kvzapProfile("import", hfDir, "--model")).toMatchObject({ code: 2 });
    expect(await kvzapProfile("show", profileDir, "--out", out)).toEqual({ code: 2, message: "--out does not apply to profile show" });
    expect(await kvzapProfile("list", "--bogus")).toEqual({ code: 2, message: "unknown option --bogus" });
    expect(fs.existsSync(out)).toBe(false);
    expect(io.stderr).toBe("");
  });
});
