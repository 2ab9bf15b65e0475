// Fitting the surrogates, per layer, in the addon. Linear: ridge regression in closed form (float64 normal equations,
// Cholesky) on CPU threads. MLP: D → D/8 → H_kv with exact erf GELU, trained with AdamW on the mean squared error, as
// the KVzap paper trains its MLPs, on CPU threads or on CUDA (calibrate picks CUDA when the build has a device), the
// same steps either way.
import type { LayerWeights } from "../profiles/weights.js";
import { ridgeFit, trainMlp as trainMlpNative, type MlpTrainingSettings } from "../engine/compute.js";
import { rng, shuffled } from "./rng.js";

/** Row-major pairs: x [n][d], y [n][h]. */
export interface Pairs {
  x: Float32Array;
  y: Float32Array;
  n: number;
  d: number;
  h: number;
}

/** λ = RIDGE_LAMBDA × the mean diagonal of the centred Gram matrix XᵀX: a nudge that keeps it well conditioned. */
export const RIDGE_LAMBDA = 1e-3;

export interface RidgeResult {
  weights: Extract<LayerWeights, { kind: "linear" }>;
  /** The λ used, in the units of XᵀX (summed over the pairs). */
  lambda: number;
}

/**
 * Ridge regression y ≈ W x + b for all heads at once: the intercept is fitted unpenalised (by centring), W solves
 * (XcᵀXc + λI) W = XcᵀYc with λ = lambdaScale · mean(diag XcᵀXc). Float64, in the addon (native/src/ridge.cpp), with
 * the Gram matrix accumulated by `threads` threads (default: all cores) off the JS thread.
 */
export async function fitRidge(p: Pairs, lambdaScale = RIDGE_LAMBDA, threads?: number): Promise<RidgeResult> {
  const { x, y, n, d, h } = p;
  if (n < 1) throw new Error("no pairs to fit");
  const r = await ridgeFit(x, y, { n, d, h, lambdaScale, threads });
  return { weights: { kind: "linear", weight: r.weight, bias: r.bias }, lambda: r.lambda };
}

// ---- MLP ----

/** erfc to a relative error below 1.2e-7 everywhere (Numerical Recipes' Chebyshev fit), enough for float32. */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

export function erf(x: number): number {
  return 1 - erfc(x);
}

/** gelu(z) = z Φ(z), Φ the standard normal CDF via erf (not the tanh approximation). */
export function geluErf(z: number): number {
  return 0.5 * z * erfc(-z / Math.SQRT2);
}

export interface MlpOptions {
  /** Hidden width (default D/8, at least 1). */
  hidden?: number;
  epochs?: number;
  batchSize?: number;
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Global gradient-norm clip. */
  clip?: number;
  seed?: number;
  /** Called with each epoch's mean training loss (in standardised units) once training ends. */
  onEpoch?: (epoch: number, epochs: number, loss: number) => void;
}

export const MLP_DEFAULTS = { epochs: 15, batchSize: 512, lr: 5e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, clip: 1.0 } as const;

export interface MlpResult {
  weights: Extract<LayerWeights, { kind: "mlp" }>;
  /** Mean training loss of the last epoch, in standardised units (1 = predicting the mean). */
  finalLoss: number;
  steps: number;
}

function meanStd(v: Float32Array, n: number, width: number): { mean: Float64Array; std: Float64Array } {
  const mean = new Float64Array(width);
  const std = new Float64Array(width);
  for (let s = 0; s < n; s++) for (let i = 0; i < width; i++) mean[i] += v[s * width + i];
  for (let i = 0; i < width; i++) mean[i] /= Math.max(1, n);
  for (let s = 0; s < n; s++) {
    for (let i = 0; i < width; i++) {
      const dlt = v[s * width + i] - mean[i];
      std[i] += dlt * dlt;
    }
  }
  // A constant feature gets σ = 1: it then only shifts the bias.
  for (let i = 0; i < width; i++) std[i] = Math.sqrt(std[i] / Math.max(1, n)) || 1;
  for (let i = 0; i < width; i++) if (std[i] < 1e-6) std[i] = 1;
  return { mean, std };
}

/** Where the MLP trains: the addon's CPU threads or its CUDA kernels (the same steps, in the same order). */
export type FitDevice = "cpu" | "cuda";

/** Everything one training run needs, in standardised units, with the batch order drawn in advance. */
export interface MlpProblem extends MlpTrainingSettings {
  /** Standardised inputs [n][d] and targets [n][h]. */
  x: Float32Array;
  y: Float32Array;
  /** Initial parameters: W1 [m][d], b1 [m], W2 [h][m], b2 [h]. */
  theta: Float32Array;
  /** Row order of each epoch, [epochs][n]. */
  perm: Uint32Array;
}

export interface MlpTrained {
  theta: Float32Array;
  /** Mean squared error per output of each epoch, standardised units. */
  epochLoss: Float64Array;
}

/**
 * One AdamW step per batch of rows in perm order: the mean squared error's gradient, the global norm clipped, a cosine
 * learning rate over all steps, decoupled weight decay (PyTorch's AdamW); float64 accumulation. In the addon, on CPU
 * threads (native/kvzap/kvzap-mlp-cpu.cpp) or on CUDA device 0 (cuda/calibration.cu); mlp-reference.ts holds the plain
 * loop both are checked against.
 */
export async function trainMlp(P: MlpProblem, device: FitDevice, threads?: number): Promise<MlpTrained> {
  const { x, y, theta, perm, ...o } = P;
  return trainMlpNative(x, y, theta, perm, { ...o, device, threads });
}

/**
 * Standardises the pairs, initialises the parameters as PyTorch's nn.Linear does (U(±1/√fan_in), from the seed) and
 * draws every epoch's row order, so that the CPU and CUDA trainers run the same steps.
 */
export function mlpProblem(p: Pairs, options: MlpOptions = {}): { problem: MlpProblem; sx: ReturnType<typeof meanStd>; sy: ReturnType<typeof meanStd> } {
  const { x, y, n, d, h } = p;
  if (n < 1) throw new Error("no pairs to fit");
  const o = { ...MLP_DEFAULTS, ...options };
  const m = options.hidden ?? Math.max(1, Math.floor(d / 8));
  const next = rng(options.seed ?? 0);
  const sx = meanStd(x, n, d);
  const sy = meanStd(y, n, h);
  const xs = new Float32Array(n * d);
  for (let s = 0; s < n; s++) for (let i = 0; i < d; i++) xs[s * d + i] = (x[s * d + i] - sx.mean[i]) / sx.std[i];
  const ys = new Float32Array(n * h);
  for (let s = 0; s < n; s++) for (let k = 0; k < h; k++) ys[s * h + k] = (y[s * h + k] - sy.mean[k]) / sy.std[k];
  const theta = new Float32Array(m * d + m + h * m + h);
  const u = (fanIn: number) => (next() * 2 - 1) / Math.sqrt(fanIn);
  let k = 0;
  for (let i = 0; i < m * d + m; i++) theta[k++] = u(d);
  for (let i = 0; i < h * m + h; i++) theta[k++] = u(m);
  const perm = new Uint32Array(o.epochs * n);
  const order = Array.from({ length: n }, (_, i) => i);
  for (let e = 0; e < o.epochs; e++) perm.set(shuffled(order, next), e * n);
  const problem: MlpProblem = {
    x: xs,
    y: ys,
    n,
    d,
    m,
    h,
    theta,
    perm,
    epochs: o.epochs,
    batch: o.batchSize,
    lr: o.lr,
    beta1: o.beta1,
    beta2: o.beta2,
    eps: o.eps,
    weightDecay: o.weightDecay,
    clip: o.clip,
  };
  return { problem, sx, sy };
}

/**
 * Trains y ≈ W2 gelu_erf(W1 x + b1) + b2 (see trainMlp) on `device` (default: CPU threads), on standardised inputs and targets, and folds
 * the scaling back into W1, b1, W2, b2, so the result reads raw attn_norm rows like any KVzap MLP.
 */
export async function fitMlp(p: Pairs, options: MlpOptions & { device?: FitDevice; threads?: number } = {}): Promise<MlpResult> {
  const { problem: P, sx, sy } = mlpProblem(p, options);
  const { d, m, h } = P;
  const trained = await trainMlp(P, options.device ?? "cpu", options.threads);
  trained.epochLoss.forEach((loss, e) => options.onEpoch?.(e + 1, P.epochs, loss));
  const theta = trained.theta;
  const oB1 = m * d;
  const oW2 = oB1 + m;
  const oB2 = oW2 + h * m;
  // Fold the standardisation in: W1' = W1 / σx, b1' = b1 − W1' μx; W2' = σy W2, b2' = σy b2 + μy.
  const w1 = new Float32Array(m * d);
  const b1 = new Float32Array(m);
  for (let j = 0; j < m; j++) {
    let shift = 0;
    for (let i = 0; i < d; i++) {
      const w = theta[j * d + i] / sx.std[i];
      w1[j * d + i] = w;
      shift += w * sx.mean[i];
    }
    b1[j] = theta[oB1 + j] - shift;
  }
  const w2 = new Float32Array(h * m);
  const b2 = new Float32Array(h);
  for (let k = 0; k < h; k++) {
    for (let j = 0; j < m; j++) w2[k * m + j] = theta[oW2 + k * m + j] * sy.std[k];
    b2[k] = theta[oB2 + k] * sy.std[k] + sy.mean[k];
  }
  const steps = P.epochs * Math.ceil(P.n / Math.max(1, Math.min(P.batch, P.n)));
  return { weights: { kind: "mlp", w1, b1, w2, b2, hidden: m }, finalLoss: trained.epochLoss[P.epochs - 1], steps };
}

/** The surrogate's predictions for rows x [n][d]: [n][h], computed in float64. */
export function predict(w: LayerWeights, x: Float32Array, n: number, d: number, h: number): Float64Array {
  const out = new Float64Array(n * h);
  if (w.kind === "linear") {
    for (let s = 0; s < n; s++) {
      for (let k = 0; k < h; k++) {
        let acc = w.bias[k];
        for (let i = 0; i < d; i++) acc += w.weight[k * d + i] * x[s * d + i];
        out[s * h + k] = acc;
      }
    }
    return out;
  }
  const m = w.hidden;
  const a = new Float64Array(m);
  for (let s = 0; s < n; s++) {
    for (let j = 0; j < m; j++) {
      let acc = w.b1[j];
      for (let i = 0; i < d; i++) acc += w.w1[j * d + i] * x[s * d + i];
      a[j] = geluErf(acc);
    }
    for (let k = 0; k < h; k++) {
      let acc = w.b2[k];
      for (let j = 0; j < m; j++) acc += w.w2[k * m + j] * a[j];
      out[s * h + k] = acc;
    }
  }
  return out;
}

/** R² per output column: 1 − SS_res / SS_tot around the column's own mean (NaN when the column is constant). */
export function r2PerHead(pred: Float64Array, y: Float32Array, n: number, h: number): number[] {
  return Array.from({ length: h }, (_, k) => {
    let mean = 0;
    for (let s = 0; s < n; s++) mean += y[s * h + k];
    mean /= Math.max(1, n);
    let res = 0;
    let tot = 0;
    for (let s = 0; s < n; s++) {
      const e = y[s * h + k] - pred[s * h + k];
      const t = y[s * h + k] - mean;
      res += e * e;
      tot += t * t;
    }
    return tot > 0 ? 1 - res / tot : NaN;
  });
}
