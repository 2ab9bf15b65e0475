// kvzap calibrate: prompts → KVzip+ oracle scores → a fitted surrogate → τ for a target compression → a profile.
// A plain async function; src/cli/calibrate.ts parses the arguments, shows progress and prints the summary.
import path from "node:path";
import { InterruptedError, UserError } from "../base/errors.js";
import { VERSION } from "../base/version.js";
import { OracleCache, type CacheSettings } from "../calibrate/cache.js";
import { checkQuality, type CheckReport } from "../calibrate/check.js";
import {
  DEFAULT_PROMPT_TOKENS,
  promptLength,
  readCalibrationData,
  resolveDataPaths,
  selectPrompts,
  type CalibrationPrompt,
  type DataFile,
  type PromptLength,
} from "../calibrate/data.js";
import { MLP_DEFAULTS, RIDGE_LAMBDA, fitMlp, fitRidge, predict, r2PerHead, type FitDevice } from "../calibrate/fit.js";
import { REPEAT_CHUNK, SAMPLES_PER_PROMPT, oracleLength, repeatLayout, runOracle, type OracleSummary } from "../calibrate/oracle.js";
import { rng, subSeed } from "../calibrate/rng.js";
import { buildTauTable, measureCompression, scorePrompts, type MeasuredCompression } from "../calibrate/tau.js";
import { writeFileAtomic } from "../base/files.js";
import { claimProfileDir } from "../profiles/claim.js";
import { systemInfo } from "../engine/compute.js";
import { defaultContextSize } from "../engine/context-size.js";
import { DEFAULT_BLOCK_SIZE, type KvProfile } from "../engine/kv.js";
import { Model } from "../engine/model.js";
import { requireKvzapSupport } from "../profiles/attention.js";
import { readModelIdentity, type ModelIdentityFile } from "../profiles/fingerprint.js";
import { PROFILE_FORMAT, PROFILE_VERSION, WEIGHTS_FILE, type ProfileManifest, type SurrogateKind, type TauPoint } from "../profiles/manifest.js";
import { writeProfile } from "../profiles/profile.js";
import { compressionForTau, keepForTau, tauForTarget } from "../profiles/tau.js";
import type { LayerWeights } from "../profiles/weights.js";

export const REPORT_FILE = "report.json";
/** Held-out share of the oracle prompts, for R² (at least one prompt). */
export const HELD_OUT_SHARE = 0.05;
/** Prompts the τ table is measured on: the held-out ones, topped up with prompts the oracle never saw. */
export const TAU_PROMPTS = 4;
/** The measured compression must land within this fraction of the target. */
export const TOLERANCE = 0.1;
/** --check: segments of held-out text and their length in tokens (at most; less in a small context). */
export const CHECK_SEGMENTS = 4;
export const CHECK_TOKENS = 1024;

export type Stage = "data" | "load" | "oracle" | "fit" | "tau" | "verify" | "check" | "write";

export type CalibrateEvent =
  | { type: "stage"; stage: Stage; text: string }
  | { type: "progress"; stage: Stage; done: number; total: number; label?: string }
  | { type: "note"; text: string };

export interface CalibrateOptions {
  /** A local GGUF file. */
  modelFile: string;
  gpuLayers?: number;
  threads?: number;
  /** Files, folders or patterns; default: the shared corpora without the held-out file. */
  data?: string[];
  kind: SurrogateKind;
  /** Exactly one: a compression ratio (full / kept) or a kept fraction. */
  target: { compression: number } | { keep: number };
  prompts: number;
  promptTokens?: number;
  seed: number;
  window: number;
  /** Caps the context the prompts must fit (default: the model's training context). */
  ctx?: number;
  check: boolean;
  /** Where the oracle and the MLP training compute (default auto: CUDA when the addon has a device). */
  device?: CalibrationDevice;
  /** The profile folder to write; the oracle cache goes to `<out>.cache`. */
  out: string;
  /** Replace an existing profile at `out` (else it is refused, as profile import refuses it). */
  force?: boolean;
  name?: string;
  signal?: AbortSignal;
  onEvent?: (e: CalibrateEvent) => void;
}

export interface PromptInfo {
  id: string;
  file: string;
  start: number;
  end: number;
  tokens: number;
  role: "fit" | "heldout" | "tau";
}

export interface CalibrationReport {
  tool: string;
  created: string;
  profile: string;
  model: {
    path: string;
    file: string;
    name: string | null;
    fingerprint: string;
    architecture: string;
    layers: number;
    embeddingSize: number;
    kvHeads: number;
    headDim: number;
    contextLength: number;
  };
  settings: Record<string, unknown>;
  data: { files: DataFile[]; checkFiles: DataFile[]; available: number; promptTokens: PromptLength; prompts: PromptInfo[] };
  oracle: OracleSummary & { cache: string; device: FitDevice | null };
  r2: { perLayer: number[]; perHead: number[][]; mean: number; trainMean: number; heldOutPrompts: number; heldOutPairs: number; trainPairs: number };
  fit: { kind: SurrogateKind; lambda?: number[]; finalLoss?: number[]; seconds: number; device: string };
  /** What computed the oracle and trained the MLP. */
  device: { requested: CalibrationDevice; used: FitDevice; cudaDevices: number };
  tau: {
    chosen: number;
    target: { compression: number } | { keep: number };
    window: number;
    blockSize: number;
    table: TauPoint[];
    predicted: { compression: number; keep: number };
    measuredCompression: number;
    measuredKeep: number;
    withinTolerance: boolean;
    tolerance: number;
    /** Extra τ tries when the first choice measured outside the tolerance. */
    refinements: { tau: number; compression: number }[];
    prompts: number;
    promptTokens: number;
  };
  check?: CheckReport & { text: string };
  timings: Record<string, number>;
}

/** Thrown when the signal stops a calibration; the oracle's finished prompts stay cached. */
export class CalibrationInterrupted extends InterruptedError {
  constructor(
    readonly cached: number,
    readonly total: number,
    readonly cacheDir: string,
  ) {
    super(`stopped: ${cached} of ${total} prompts are in the oracle cache ${cacheDir}; run the same command again to resume`);
  }
}

export type CalibrationDevice = "auto" | "cpu" | "cuda";

/** auto → CUDA when the addon was built with it and sees a GPU, else the CPU; cuda without a device is refused. */
function calibrationDevice(requested: CalibrationDevice): CalibrationReport["device"] {
  const { cudaDevices, backend } = systemInfo();
  if (requested === "cuda" && cudaDevices === 0) {
    throw new UserError(
      backend === "cuda"
        ? "--device cuda: no CUDA device is visible"
        : "--device cuda: this kvzap was built for the CPU; rebuild it with CUDA (KVZAP_CUDA=1 npm install) or use --device cpu",
    );
  }
  return { requested, used: requested === "cpu" || cudaDevices === 0 ? "cpu" : "cuda", cudaDevices };
}

function deviceText(d: FitDevice): string {
  return d === "cuda" ? "CUDA" : "the CPU";
}

function targetText(t: CalibrateOptions["target"]): string {
  return "compression" in t ? `${t.compression}x` : `keep ${(t.keep * 100).toFixed(1)}%`;
}

function round(x: number, digits = 4): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * Calibrates a profile into `opts.out` under the one rule for profile folders (profiles/claim.ts): an existing profile
 * only with `force`, one writer at a time, the folder replaced whole.
 */
export async function calibrate(opts: CalibrateOptions): Promise<CalibrationReport> {
  const claim = await claimProfileDir(opts.out, { force: opts.force ?? false });
  try {
    return await runCalibration(opts);
  } finally {
    await claim.release();
  }
}

async function runCalibration(opts: CalibrateOptions): Promise<CalibrationReport> {
  const emit = opts.onEvent ?? (() => {});
  const timings: Record<string, number> = {};
  const t0 = performance.now();
  let mark = t0;
  const lap = (stage: Stage) => {
    const now = performance.now();
    timings[stage] = round((now - mark) / 1000, 3);
    mark = now;
  };
  if (!Number.isInteger(opts.prompts) || opts.prompts < 2) throw new UserError(`--prompts must be at least 2 (one is held out), got ${opts.prompts}`);
  // a model KVzap cannot run is refused from its header, before any data is read or anything is written
  await requireKvzapSupport(opts.modelFile, "calibrate");
  const device = calibrationDevice(opts.device ?? "auto");
  const out = path.resolve(opts.out);

  // ---- data
  emit({ type: "stage", stage: "data", text: "reading the calibration data" });
  const where = await resolveDataPaths(opts.data);
  const data = await readCalibrationData(where.files);
  for (const f of data.files) if (f.skipped) emit({ type: "note", text: `skipped ${f.skipped}` });
  const checkData = opts.check && where.checkFiles.length > 0 ? await readCalibrationData(where.checkFiles) : null;
  lap("data");

  // ---- model
  emit({ type: "stage", stage: "load", text: `loading ${opts.modelFile}` });
  const identity: ModelIdentityFile = await readModelIdentity(opts.modelFile);
  const model = await Model.load(opts.modelFile, { gpuLayers: opts.gpuLayers });
  try {
    const info = model.info;
    const layout = repeatLayout(model);
    const limit = Math.min(defaultContextSize(info.contextLength), opts.ctx ?? Infinity);
    const { len, selection, oraclePrompts, fitPrompts, heldPrompts, tauPrompts } = splitPrompts(model, data, layout, limit, opts);
    if (len.scaled) emit({ type: "note", text: `prompts of ${len.min}–${len.max} tokens, so that a prompt and its repetition fit the ${limit}-token context` });
    lap("load");

    // ---- oracle
    const cacheDir = `${out}.cache`;
    const { cache, oracle } = await oracleStage({
      model,
      fingerprint: identity.fingerprint,
      layout,
      prompts: oraclePrompts,
      len,
      cacheDir,
      device: device.used,
      opts,
      emit,
    });
    if (oracle.interrupted) throw new CalibrationInterrupted(oracle.cached + oracle.computed, oracle.prompts, cacheDir);
    lap("oracle");

    // ---- fit
    const kindText =
      opts.kind === "linear"
        ? "ridge regression"
        : `MLP ${info.embeddingSize}→${Math.max(1, Math.floor(info.embeddingSize / 8))}→${info.kvHeads}, AdamW, ${MLP_DEFAULTS.epochs} epochs`;
    const fitOn = deviceText(opts.kind === "linear" ? "cpu" : device.used);
    emit({
      type: "stage",
      stage: "fit",
      text: `fitting ${info.layers} layers (${kindText}) on ${fitPrompts.length} prompts, on ${fitOn}; R² on ${heldPrompts.length} held out`,
    });
    const D = info.embeddingSize;
    const H = info.kvHeads;
    const fitted = await fitLayers({
      cache,
      fitIds: fitPrompts.map((p) => p.id),
      heldIds: heldPrompts.map((p) => p.id),
      kind: opts.kind,
      layers: info.layers,
      D,
      H,
      device: device.used,
      threads: opts.threads,
      seed: opts.seed,
      signal: opts.signal,
      onProgress: (done) => emit({ type: "progress", stage: "fit", done, total: info.layers }),
    });
    if (!fitted) throw new CalibrationInterrupted(oracle.prompts, oracle.prompts, cacheDir);
    const { layers, perHead, perLayer, trainR2, lambdas, losses, trainPairs, heldPairs } = fitted;
    lap("fit");

    // ---- τ table on held-out prompts
    const bos = info.addBos ? [info.bos] : [];
    const tauTokens = tauPrompts.map((p) => [...bos, ...p.tokens]);
    const hiddenDim = opts.kind === "mlp" ? (layers[0] as { hidden: number }).hidden : null;
    // what the τ, verify and check stages run: the fitted surrogate; τ is theirs to choose, so the draft has none
    const surrogate: KvProfile = { manifest: { tau: Number.NaN, window: opts.window, surrogate: { kind: opts.kind, hiddenDim } }, layers };
    emit({ type: "stage", stage: "tau", text: `τ table on ${tauTokens.length} held-out prompts (window ${opts.window}, blocks of ${DEFAULT_BLOCK_SIZE})` });
    const sessionSettings = { threads: opts.threads, signal: opts.signal };
    const tauStage = await tauFromTable(model, surrogate, tauTokens, opts.window, opts.target, {
      ...sessionSettings,
      shape: { layers: info.layers, kvHeads: H, window: opts.window, blockSize: DEFAULT_BLOCK_SIZE },
      onProgress: (done, total) => emit({ type: "progress", stage: "tau", done, total }),
    });
    if (!tauStage) throw new CalibrationInterrupted(oracle.prompts, oracle.prompts, cacheDir);
    const { table } = tauStage;
    lap("tau");

    // ---- verify on the real memory
    emit({ type: "stage", stage: "verify", text: `measuring the real memory at τ = ${tauStage.chosen}` });
    const verified = await verifyTau(model, surrogate, tauTokens, opts.window, opts.target, table, tauStage.chosen, {
      ...sessionSettings,
      onProgress: (done, total) => emit({ type: "progress", stage: "verify", done, total }),
    });
    if (!verified) throw new CalibrationInterrupted(oracle.prompts, oracle.prompts, cacheDir);
    const { measured, refinements, off } = verified;
    const chosen = measured.tau;
    const within = off(measured) <= TOLERANCE;
    if (!within)
      emit({
        type: "note",
        text: `the real memory compresses ${measured.compression.toFixed(2)}x at τ = ${chosen}, outside ±${TOLERANCE * 100}% of ${targetText(opts.target)}`,
      });
    lap("verify");

    // ---- check
    let check: CalibrationReport["check"];
    if (opts.check) {
      const checkLen = Math.min(CHECK_TOKENS, limit - 2);
      const segments = checkData
        ? checkSegments(checkData.sources.map((s) => s.text).join("\n\n"), model, bos, checkLen, opts.seed)
        : tauTokens.map((t) => t.slice(0, checkLen));
      const text = checkData ? checkData.files.map((f) => path.basename(f.path)).join(", ") : "the held-out calibration prompts";
      emit({ type: "stage", stage: "check", text: `perplexity and KL on ${segments.length} segments of ${text} at τ = ${chosen}` });
      const r = await checkQuality(model, surrogate, chosen, opts.window, segments, {
        ...sessionSettings,
        onProgress: (done, total) => emit({ type: "progress", stage: "check", done, total }),
      });
      if (!r) throw new CalibrationInterrupted(oracle.prompts, oracle.prompts, cacheDir);
      check = { ...r, text };
      lap("check");
    }

    // ---- write
    emit({ type: "stage", stage: "write", text: `writing ${out}` });
    const settings = {
      kind: opts.kind,
      target: opts.target,
      prompts: opts.prompts,
      heldOutPrompts: heldPrompts.length,
      tauPrompts: tauPrompts.length,
      promptTokens: len,
      seed: opts.seed,
      window: opts.window,
      blockSize: DEFAULT_BLOCK_SIZE,
      contextLimit: limit,
      samplesPerPrompt: SAMPLES_PER_PROMPT,
      repeatChunk: REPEAT_CHUNK,
      repeatPrompt: layout.templated ? "chat template" : "plain text",
      fit:
        opts.kind === "linear"
          ? { method: "ridge", lambda: `${RIDGE_LAMBDA} × mean diag(XcᵀXc)` }
          : { method: "AdamW", ...MLP_DEFAULTS, schedule: "cosine", hidden: hiddenDim, standardised: true },
      check: opts.check,
      threads: opts.threads ?? null,
    };
    const provenance: ProfileManifest["provenance"] = {
      tool: `kvzap calibrate ${VERSION}`,
      created: new Date().toISOString(),
      source: `KVzip+ oracle on ${oraclePrompts.length} prompts (${oracle.pairs} pairs) of ${len.min}–${len.max} tokens`,
      data: data.files.filter((f) => !f.skipped).map((f) => ({ file: path.basename(f.path), sha256: f.sha256, bytes: f.bytes })),
      notes:
        `${opts.kind === "linear" ? "ridge regression" : "MLP with AdamW"} on ${deviceText(opts.kind === "linear" ? "cpu" : device.used)}; held-out R² ${mean(perLayer).toFixed(3)}; ` +
        `τ ${chosen} for ${targetText(opts.target)}: measured ${measured.compression.toFixed(2)}x on ${tauTokens.length} held-out prompts`,
      settings: { ...settings, target: targetText(opts.target) },
    };
    // the manifest is made once, complete: the chosen τ, its table and where it all came from
    const manifest: ProfileManifest = {
      format: PROFILE_FORMAT,
      version: PROFILE_VERSION,
      name: opts.name ?? `${path.basename(identity.path).replace(/\.gguf$/i, "")}-${opts.kind}`,
      model: {
        architecture: identity.architecture,
        layers: identity.layers,
        embeddingSize: identity.embeddingSize,
        kvHeads: identity.kvHeads,
        headDim: identity.headDim,
        fingerprint: identity.fingerprint,
        file: path.basename(identity.path),
      },
      surrogate: { kind: opts.kind, inputDim: D, outputDim: H, hiddenDim, layers: info.layers },
      tau: chosen,
      window: opts.window,
      tauTable: table,
      provenance,
      weights: WEIGHTS_FILE,
    };
    await writeProfile(out, manifest, layers);
    lap("write");
    timings.total = round((performance.now() - t0) / 1000, 3);

    const report: CalibrationReport = {
      tool: `kvzap calibrate ${VERSION}`,
      created: manifest.provenance.created,
      profile: out,
      model: {
        path: identity.path,
        file: path.basename(identity.path),
        name: identity.name,
        fingerprint: identity.fingerprint,
        architecture: identity.architecture,
        layers: identity.layers,
        embeddingSize: identity.embeddingSize,
        kvHeads: identity.kvHeads,
        headDim: identity.headDim,
        contextLength: info.contextLength,
      },
      settings,
      data: {
        files: data.files,
        checkFiles: checkData?.files ?? [],
        available: selection.available,
        promptTokens: len,
        prompts: [
          ...fitPrompts.map((p) => promptInfo(p, "fit")),
          ...heldPrompts.map((p) => promptInfo(p, "heldout")),
          ...tauPrompts.slice(heldPrompts.length).map((p) => promptInfo(p, "tau")),
        ],
      },
      // the device of this run's oracle; null when every prompt came from the cache
      oracle: { ...oracle, seconds: round(oracle.seconds, 3), cache: cacheDir, device: oracle.computed > 0 ? device.used : null },
      r2: {
        perLayer: perLayer.map((x) => round(x)),
        perHead: perHead.map((r) => r.map((x) => round(x))),
        mean: round(mean(perLayer)),
        trainMean: round(mean(trainR2)),
        heldOutPrompts: heldPrompts.length,
        heldOutPairs: heldPairs,
        trainPairs,
      },
      fit: {
        kind: opts.kind,
        ...(opts.kind === "linear" ? { lambda: lambdas.map((x) => round(x, 6)) } : { finalLoss: losses.map((x) => round(x)) }),
        seconds: timings.fit,
        device: opts.kind === "linear" || device.used === "cpu" ? "CPU threads (float64 accumulation)" : "CUDA (float64 accumulation)",
      },
      device,
      tau: {
        chosen,
        target: opts.target,
        window: opts.window,
        blockSize: DEFAULT_BLOCK_SIZE,
        table,
        predicted: { compression: round(compressionForTau(table, chosen)), keep: round(keepForTau(table, chosen)) },
        measuredCompression: round(measured.compression),
        measuredKeep: round(measured.keep),
        withinTolerance: within,
        tolerance: TOLERANCE,
        refinements,
        prompts: tauTokens.length,
        promptTokens: tauTokens.reduce((a, t) => a + t.length, 0),
      },
      ...(check ? { check } : {}),
      timings,
    };
    const reportPath = path.join(out, REPORT_FILE);
    await writeFileAtomic(reportPath, JSON.stringify(report, null, 2) + "\n");
    return report;
  } finally {
    model.dispose();
  }
}

function promptInfo(p: CalibrationPrompt, role: PromptInfo["role"]): PromptInfo {
  return { id: p.id, file: p.file, start: p.start, end: p.end, tokens: p.tokens.length, role };
}

function mean(v: readonly number[]): number {
  const ok = v.filter(Number.isFinite);
  return ok.length > 0 ? ok.reduce((a, b) => a + b, 0) / ok.length : NaN;
}

/** CHECK_SEGMENTS pieces of `len` tokens (BOS included) from spread-out, seeded places in the held-out text. */
function checkSegments(text: string, model: Model, bos: number[], len: number, seed: number): number[][] {
  const tokens = model.tokenize(text, { addSpecial: false });
  const body = len - bos.length;
  const count = Math.max(1, Math.min(CHECK_SEGMENTS, Math.floor(tokens.length / body)));
  if (tokens.length < body) return [[...bos, ...tokens]];
  const span = Math.floor(tokens.length / count);
  const next = rng(subSeed(seed, "check"));
  return Array.from({ length: count }, (_, k) => {
    const start = k * span + Math.floor(next() * Math.max(1, span - body));
    return [...bos, ...tokens.slice(start, start + body)];
  });
}

interface FitLayersInput {
  cache: OracleCache;
  fitIds: string[];
  heldIds: string[];
  kind: SurrogateKind;
  layers: number;
  D: number;
  H: number;
  device: FitDevice;
  threads?: number;
  seed: number;
  signal?: AbortSignal;
  /** Layers done, fractional during an MLP's epochs. */
  onProgress: (done: number) => void;
}

interface FittedLayers {
  layers: LayerWeights[];
  /** Held-out R² per layer and head, and per layer. */
  perHead: number[][];
  perLayer: number[];
  trainR2: number[];
  lambdas: number[];
  losses: number[];
  trainPairs: number;
  heldPairs: number;
}

/** The fit stage: one surrogate per layer from the cached oracle pairs, with its R²; null when stopped. */
async function fitLayers(o: FitLayersInput): Promise<FittedLayers | null> {
  const { D, H } = o;
  const out: FittedLayers = { layers: [], perHead: [], perLayer: [], trainR2: [], lambdas: [], losses: [], trainPairs: 0, heldPairs: 0 };
  for (let l = 0; l < o.layers; l++) {
    if (o.signal?.aborted) return null;
    const train = await o.cache.layer(o.fitIds, l);
    const held = await o.cache.layer(o.heldIds, l);
    out.trainPairs = train.n;
    out.heldPairs = held.n;
    const pairs = { x: train.x, y: train.y, n: train.n, d: D, h: H };
    let w: LayerWeights;
    if (o.kind === "linear") {
      const r = await fitRidge(pairs, RIDGE_LAMBDA, o.threads);
      w = r.weights;
      out.lambdas.push(r.lambda);
    } else {
      const r = await fitMlp(pairs, {
        device: o.device,
        threads: o.threads,
        seed: subSeed(o.seed, "mlp", l),
        onEpoch: (e, total) => o.onProgress(l + e / total),
      });
      w = r.weights;
      out.losses.push(r.finalLoss);
    }
    out.layers.push(w);
    out.perHead.push(r2PerHead(predict(w, held.x, held.n, D, H), held.y, held.n, H));
    // Training R² on at most 4000 pairs: enough to see over- or under-fitting.
    const k = Math.min(train.n, 4000);
    out.trainR2.push(mean(r2PerHead(predict(w, train.x.subarray(0, k * D), k, D, H), train.y.subarray(0, k * H), k, H)));
    o.onProgress(l + 1);
  }
  out.perLayer = out.perHead.map(mean);
  return out;
}

type SessionRun = { threads?: number; signal?: AbortSignal; onProgress: (done: number, total: number) => void };

/** The τ stage: every held-out prompt's scores with nothing evicted → a τ → compression table → τ for the target. */
async function tauFromTable(
  model: Model,
  surrogate: KvProfile,
  tauTokens: number[][],
  window: number,
  target: CalibrateOptions["target"],
  s: SessionRun & { shape: Parameters<typeof buildTauTable>[1] },
): Promise<{ table: TauPoint[]; chosen: number } | null> {
  const scored = await scorePrompts(model, surrogate, tauTokens, window, s);
  if (!scored) return null;
  const table = buildTauTable(scored, s.shape);
  try {
    return { table, chosen: round(tauForTarget(table, target)) };
  } catch (e) {
    const top = table.length > 0 ? table[table.length - 1].compression : 1;
    throw new UserError(
      `${(e as Error).message}. On the held-out prompts (~${Math.round(mean(tauTokens.map((t) => t.length)))} tokens, window ${window}) ` +
        `the memory reaches at most ${top.toFixed(2)}x: lower the target, shrink --window or use longer prompts (--prompt-tokens)`,
    );
  }
}

/**
 * The verify stage: the real memory's compression at τ. The table comes from scores with nothing evicted; eviction
 * changes later layers' inputs and so their scores. When that moves the real compression out of tolerance, aim the
 * table at the target corrected by the observed ratio (three tries at most). Null when stopped.
 */
async function verifyTau(
  model: Model,
  surrogate: KvProfile,
  tauTokens: number[][],
  window: number,
  target: CalibrateOptions["target"],
  table: TauPoint[],
  chosen: number,
  s: SessionRun,
): Promise<{ measured: MeasuredCompression; refinements: { tau: number; compression: number }[]; off: (m: MeasuredCompression) => number } | null> {
  const wantCompression = "compression" in target ? target.compression : 1 / target.keep;
  // ±10% in the target's own terms: of the compression ratio, or of the kept fraction
  const off = (m: MeasuredCompression) => ("keep" in target ? Math.abs(m.keep / target.keep - 1) : Math.abs(m.compression / wantCompression - 1));
  let measured = await measureCompression(model, surrogate, chosen, window, tauTokens, s);
  if (!measured) return null;
  const refinements: { tau: number; compression: number }[] = [];
  for (let i = 0; i < 3 && off(measured) > TOLERANCE; i++) {
    const ratio = measured.compression / compressionForTau(table, measured.tau);
    const aim = Math.min(table[table.length - 1].compression, Math.max(table[0].compression, wantCompression / ratio));
    const tau = round(tauForTarget(table, { compression: aim }));
    if (tau === measured.tau) break;
    const next = await measureCompression(model, surrogate, tau, window, tauTokens, s);
    if (!next) return null;
    refinements.push({ tau, compression: round(next.compression) });
    if (off(next) < off(measured)) measured = next;
  }
  return { measured, refinements, off };
}

/**
 * The prompts of a run, cut from the data to fit the context with their repetition: the oracle's (the first
 * `prompts`), of which the last 5% (at least one) are held out for R²; the τ table's are the held-out ones plus
 * more, up to TAU_PROMPTS.
 */
function splitPrompts(model: Model, data: Parameters<typeof selectPrompts>[0], layout: ReturnType<typeof repeatLayout>, limit: number, opts: CalibrateOptions) {
  const len = promptLength(opts.promptTokens ?? DEFAULT_PROMPT_TOKENS, limit, layout.prefix.length + layout.middle.length, REPEAT_CHUNK);
  const heldCount = Math.max(1, Math.ceil(HELD_OUT_SHARE * opts.prompts));
  const selection = selectPrompts(data, model, len, opts.prompts, opts.seed, Math.max(0, TAU_PROMPTS - heldCount));
  const oraclePrompts = selection.prompts.slice(0, opts.prompts);
  const heldPrompts = oraclePrompts.slice(opts.prompts - heldCount);
  return {
    len,
    selection,
    oraclePrompts,
    fitPrompts: oraclePrompts.slice(0, opts.prompts - heldCount),
    heldPrompts,
    tauPrompts: [...heldPrompts, ...selection.prompts.slice(opts.prompts)],
  };
}

/** The oracle stage: KVzip+ scores of every prompt not in the cache yet, into the cache. */
async function oracleStage(o: {
  model: Model;
  fingerprint: string;
  layout: ReturnType<typeof repeatLayout>;
  prompts: CalibrationPrompt[];
  len: { min: number; max: number };
  cacheDir: string;
  device: FitDevice;
  opts: CalibrateOptions;
  emit: (e: CalibrateEvent) => void;
}): Promise<{ cache: OracleCache; oracle: OracleSummary }> {
  const { model, fingerprint, layout, prompts, len, cacheDir, device, opts, emit } = o;
  const info = model.info;
  const geometry = { layers: info.layers, embeddingSize: info.embeddingSize, kvHeads: info.kvHeads };
  const cacheSettings: CacheSettings = {
    model: fingerprint,
    ...geometry,
    samplesPerPrompt: SAMPLES_PER_PROMPT,
    repeatChunk: REPEAT_CHUNK,
    seed: opts.seed,
    layout: `${layout.prefix.join(",")}|${layout.middle.join(",")}`,
  };
  const cache = await OracleCache.open(cacheDir, cacheSettings);
  if (cache.discarded) emit({ type: "note", text: `started a new oracle cache in ${cacheDir}: the old one was discarded (${cache.discarded})` });
  const already = prompts.filter((p) => cache.has(p.id)).length;
  emit({
    type: "stage",
    stage: "oracle",
    text:
      `KVzip+ oracle on ${prompts.length} prompts of ${len.min}–${len.max} tokens, on ${deviceText(device)}` +
      (already > 0 ? ` (resuming: ${already} of ${prompts.length} prompts cached)` : ""),
  });
  const oracleContext = Math.max(...prompts.map((p) => oracleLength(layout, p.tokens.length))) + 1;
  const oracle = await runOracle({
    prompts,
    cache,
    layout,
    geometry,
    seed: opts.seed,
    device,
    signal: opts.signal,
    openSession: () => model.createSession({ contextSize: oracleContext, threads: opts.threads, kv: { policy: "kvzap", oracle: true } }),
    // the ETA is paced by the prompts this run computes; cached ones take no time
    onProgress: (p) =>
      p.total > p.cached &&
      emit({
        type: "progress",
        stage: "oracle",
        done: p.done - p.cached,
        total: p.total - p.cached,
        label: p.cached > 0 ? `oracle (${p.cached} cached)` : "oracle",
      }),
  });
  return { cache, oracle };
}
