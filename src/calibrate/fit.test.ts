// Fitting on synthetic data whose answer is known: the ridge solution, the MLP's ability to learn a GELU network,
// the folding of the standardisation, and R².
import { describe, expect, it } from "vitest";
import { loadAddon } from "../engine/addon.js";
import { erf, fitMlp, fitRidge, geluErf, mlpProblem, predict, r2PerHead, trainMlp, type Pairs } from "./fit.js";
import { trainMlpReference } from "./mlp-reference.js";
import { relativeError } from "./oracle-reference.js";
import { gaussian, rng } from "./rng.js";

function synthetic(n: number, d: number, h: number, f: (x: Float32Array, out: Float64Array) => void, noise: number, seed: number, scale = 1, shift = 0): Pairs {
  const next = rng(seed);
  const x = new Float32Array(n * d);
  const y = new Float32Array(n * h);
  const out = new Float64Array(h);
  for (let s = 0; s < n; s++) {
    const row = x.subarray(s * d, (s + 1) * d);
    for (let i = 0; i < d; i++) row[i] = gaussian(next) * scale + shift;
    f(row, out);
    for (let k = 0; k < h; k++) y[s * h + k] = out[k] + noise * gaussian(next);
  }
  return { x, y, n, d, h };
}

function randomMatrix(rows: number, cols: number, seed: number, scale: number): Float64Array {
  const next = rng(seed);
  return Float64Array.from({ length: rows * cols }, () => gaussian(next) * scale);
}

describe("functions", () => {
  it("erf and the exact GELU match reference values", () => {
    // erf(0.5), erf(1), erf(2), erf(-1.5) to 1e-7; gelu(1) = Φ(1) = 0.8413447460685429
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 7);
    expect(erf(1)).toBeCloseTo(0.8427007929497149, 7);
    expect(erf(2)).toBeCloseTo(0.9953222650189527, 7);
    expect(erf(-1.5)).toBeCloseTo(-0.9661051464753108, 7);
    expect(geluErf(1)).toBeCloseTo(0.8413447460685429, 7);
    expect(geluErf(-3)).toBeCloseTo(-3 * 0.0013498980316301, 7);
    expect(geluErf(0)).toBe(0);
  });
});

/** The ridge solution by Gaussian elimination with partial pivoting on the normal equations, in float64: the test's own. */
function ridgeByElimination(p: Pairs, lambdaScale: number): { w: Float64Array; b: Float64Array } {
  const { x, y, n, d, h } = p;
  const mx = new Float64Array(d);
  const my = new Float64Array(h);
  for (let s = 0; s < n; s++) {
    for (let i = 0; i < d; i++) mx[i] += x[s * d + i] / n;
    for (let k = 0; k < h; k++) my[k] += y[s * h + k] / n;
  }
  // augmented [XcᵀXc + λI | XcᵀYc]
  const A = Array.from({ length: d }, () => new Float64Array(d + h));
  for (let s = 0; s < n; s++) {
    for (let i = 0; i < d; i++) {
      const xi = x[s * d + i] - mx[i];
      for (let j = 0; j < d; j++) A[i][j] += xi * (x[s * d + j] - mx[j]);
      for (let k = 0; k < h; k++) A[i][d + k] += xi * (y[s * h + k] - my[k]);
    }
  }
  const lambda = (lambdaScale * A.reduce((t, row, i) => t + row[i], 0)) / d;
  for (let i = 0; i < d; i++) A[i][i] += lambda;
  for (let c = 0; c < d; c++) {
    let piv = c;
    for (let r = c + 1; r < d; r++) if (Math.abs(A[r][c]) > Math.abs(A[piv][c])) piv = r;
    [A[c], A[piv]] = [A[piv], A[c]];
    for (let r = 0; r < d; r++) {
      if (r === c) continue;
      const f = A[r][c] / A[c][c];
      for (let j = c; j < d + h; j++) A[r][j] -= f * A[c][j];
    }
  }
  const w = new Float64Array(h * d);
  const b = Float64Array.from(my);
  for (let k = 0; k < h; k++) {
    for (let i = 0; i < d; i++) {
      w[k * d + i] = A[i][d + k] / A[i][i];
      b[k] -= w[k * d + i] * mx[i];
    }
  }
  return { w, b };
}

describe("ridge regression", () => {
  it("equals the normal equations solved by elimination in float64, for any thread count and across Cholesky blocks", async () => {
    // d = 230 spans three of the factorisation's column blocks (96 wide)
    for (const [d, n] of [
      [40, 700],
      [230, 900],
    ]) {
      const h = 3;
      const W = randomMatrix(h, d, 13, 0.3);
      const p = synthetic(
        n,
        d,
        h,
        (x, out) => {
          for (let k = 0; k < h; k++) out[k] = W.slice(k * d, (k + 1) * d).reduce((a, w, i) => a + w * x[i], k - 1);
        },
        0.5,
        14,
        1.5,
        -2,
      );
      const want = ridgeByElimination(p, 0.05);
      for (const threads of [1, 2, 7]) {
        const { weights } = await fitRidge(p, 0.05, threads);
        expect(relativeError(weights.weight, want.w)).toBeLessThan(1e-6);
        expect(relativeError(weights.bias, want.b)).toBeLessThan(1e-6);
      }
    }
  });

  it("recovers W and b of a noiseless linear map (λ only nudges)", async () => {
    const d = 24;
    const h = 3;
    const W = randomMatrix(h, d, 11, 0.5);
    const b = [-6, -2.5, 1];
    const p = synthetic(
      4000,
      d,
      h,
      (x, out) => {
        for (let k = 0; k < h; k++) {
          let s = b[k];
          for (let i = 0; i < d; i++) s += W[k * d + i] * x[i];
          out[k] = s;
        }
      },
      0,
      5,
      2,
      3,
    );
    const { weights, lambda } = await fitRidge(p);
    expect(lambda).toBeGreaterThan(0);
    for (let i = 0; i < W.length; i++) expect(Math.abs(weights.weight[i] - W[i])).toBeLessThan(2e-3);
    for (let k = 0; k < h; k++) expect(Math.abs(weights.bias[k] - b[k])).toBeLessThan(2e-2);
    const r2 = r2PerHead(predict(weights, p.x, p.n, d, h), p.y, p.n, h);
    for (const v of r2) expect(v).toBeGreaterThan(0.99999);
  });

  it("with noise, held-out R² matches the signal's share of the variance", async () => {
    const d = 16;
    const h = 2;
    const W = randomMatrix(h, d, 12, 0.25); // signal variance ≈ 16 · 0.0625 = 1
    const f = (x: Float32Array, out: Float64Array) => {
      for (let k = 0; k < h; k++) {
        let s = -5;
        for (let i = 0; i < d; i++) s += W[k * d + i] * x[i];
        out[k] = s;
      }
    };
    const train = synthetic(5000, d, h, f, 1, 6);
    const test = synthetic(3000, d, h, f, 1, 7);
    const { weights } = await fitRidge(train);
    const r2 = r2PerHead(predict(weights, test.x, test.n, d, h), test.y, test.n, h);
    // R² = var(signal) / (var(signal) + 1) per head
    for (let k = 0; k < h; k++) {
      let v = 0;
      for (let i = 0; i < d; i++) v += W[k * d + i] ** 2;
      expect(r2[k]).toBeCloseTo(v / (v + 1), 1);
    }
  });

  it("a constant input gives zero weights and the mean as bias", async () => {
    const p: Pairs = { x: new Float32Array(10 * 4).fill(2), y: Float32Array.from({ length: 10 }, (_, i) => i), n: 10, d: 4, h: 1 };
    const { weights } = await fitRidge(p);
    for (const w of weights.weight) expect(Math.abs(w)).toBeLessThan(1e-9);
    expect(weights.bias[0]).toBeCloseTo(4.5, 9);
  });
});

describe("MLP (AdamW)", () => {
  it("learns a GELU network it could represent, and the folded weights read raw inputs", async () => {
    const d = 16;
    const m = 4;
    const h = 2;
    const W1 = randomMatrix(m, d, 21, 0.4);
    const W2 = randomMatrix(h, m, 22, 1.5);
    const f = (x: Float32Array, out: Float64Array) => {
      const a = Array.from({ length: m }, (_, j) => {
        let z = 0.1 * j;
        for (let i = 0; i < d; i++) z += W1[j * d + i] * ((x[i] - 1) / 3);
        return geluErf(z);
      });
      for (let k = 0; k < h; k++) out[k] = -4 + a.reduce((s, v, j) => s + W2[k * m + j] * v, 0);
    };
    // inputs with a mean of 1 and a scale of 3: the standardisation must be folded back correctly
    const train = synthetic(6000, d, h, f, 0.02, 8, 3, 1);
    const test = synthetic(1000, d, h, f, 0.02, 9, 3, 1);
    const losses: number[] = [];
    // 15 epochs of 12 steps are too few for this small a data set to converge; 60 show that the gradients are right
    const { weights, finalLoss, steps } = await fitMlp(train, { hidden: 8, seed: 1, epochs: 60, onEpoch: (_e, _n, loss) => losses.push(loss) });
    expect(weights.hidden).toBe(8);
    expect(steps).toBe(60 * Math.ceil(6000 / 512));
    expect(losses).toHaveLength(60);
    expect(finalLoss).toBeLessThan(losses[0] / 10);
    const r2 = r2PerHead(predict(weights, test.x, test.n, d, h), test.y, test.n, h);
    for (const v of r2) expect(v).toBeGreaterThan(0.99);
  });

  it("is deterministic for a seed, and different for another", async () => {
    const p = synthetic(600, 8, 1, (x, out) => (out[0] = Math.sin(x[0]) + x[1]), 0.1, 3);
    const a = await fitMlp(p, { seed: 5, epochs: 2 });
    const b = await fitMlp(p, { seed: 5, epochs: 2 });
    const c = await fitMlp(p, { seed: 6, epochs: 2 });
    // the defaults: 15 epochs of batches of 512
    expect((await fitMlp(p, { seed: 5 })).steps).toBe(15 * 2);
    expect(Array.from(a.weights.w1)).toEqual(Array.from(b.weights.w1));
    expect(Array.from(a.weights.w1)).not.toEqual(Array.from(c.weights.w1));
    expect(a.weights.hidden).toBe(1); // D/8
  });
});

describe("MLP training in the addon", () => {
  const cuda = loadAddon().systemInfo().cudaDevices;
  const target = (x: Float32Array, out: Float64Array) => ((out[0] = Math.tanh(x[0] + x[1])), (out[1] = x[2] * x[3]));

  it("on CPU threads: the reference loop's steps (parameters within 1e-6 after 2 epochs), for any thread count", async () => {
    const p = synthetic(1500, 48, 2, target, 0.05, 15);
    const { problem } = mlpProblem(p, { seed: 4, epochs: 2, batchSize: 256 });
    const want = trainMlpReference(problem);
    for (const threads of [1, 3]) {
      const got = await trainMlp(problem, "cpu", threads);
      expect(relativeError(got.theta, want.theta)).toBeLessThanOrEqual(1e-6);
      expect(Math.abs(got.epochLoss[1] / want.epochLoss[1] - 1)).toBeLessThan(1e-7);
    }
  });

  it.runIf(cuda === 0)("CUDA in a build without a CUDA device: a clear error", async () => {
    const p = synthetic(64, 8, 2, target, 0.1, 4);
    await expect(fitMlp(p, { device: "cuda", epochs: 1 })).rejects.toThrow(/^MLP training on CUDA failed: this build has no CUDA backend/);
  });

  // CUDA machines (scripts/gpu/check-calibration.sh runs the same comparison on real oracle pairs)
  it.runIf(cuda > 0)("on CUDA: the reference loop's steps (1e-4 after an epoch), the same held-out R² after 15", async () => {
    const p = synthetic(3000, 32, 2, target, 0.05, 11);
    const { problem } = mlpProblem(p, { seed: 3, epochs: 1 });
    const a = trainMlpReference(problem);
    const b = await trainMlp(problem, "cuda");
    expect(relativeError(b.theta, a.theta)).toBeLessThanOrEqual(1e-4);
    expect(b.epochLoss[0]).toBeCloseTo(a.epochLoss[0], 5);
    const test = synthetic(500, 32, 2, target, 0.05, 12);
    const r2 = async (device: "cpu" | "cuda") => r2PerHead(predict((await fitMlp(p, { seed: 3, device })).weights, test.x, test.n, 32, 2), test.y, test.n, 2);
    const [rc, rg] = [await r2("cpu"), await r2("cuda")];
    for (let k = 0; k < 2; k++) expect(Math.abs(rc[k] - rg[k])).toBeLessThanOrEqual(0.01);
  });
});

describe("the addon's fitting entry points refuse bad sizes with an error, not a crash", () => {
  it("non-integer, negative or non-finite sizes and settings", async () => {
    const addon = loadAddon();
    const x = new Float32Array(8);
    const y = new Float32Array(4);
    await expect(async () => addon.ridgeFit(x, y, { n: 4, d: 2.5, h: 1, lambdaScale: 1e-3 })).rejects.toThrow(/options\.d must be an integer/);
    await expect(async () => addon.ridgeFit(x, y, { n: -1, d: 2, h: 1, lambdaScale: 1e-3 })).rejects.toThrow(/options\.n must be an integer/);
    await expect(async () => addon.ridgeFit(x, y, { n: 4, d: 2, h: 1, lambdaScale: NaN })).rejects.toThrow(/options\.lambdaScale must be a finite number/);
    const { problem } = mlpProblem({ x, y, n: 4, d: 2, h: 1 }, { epochs: 1 });
    const { x: px, y: py, theta, perm, ...o } = problem;
    await expect(async () => addon.trainMlp(px, py, theta, perm, { ...o, lr: Infinity, device: "cpu" })).rejects.toThrow(/options\.lr must be a finite number/);
    await expect(async () => addon.trainMlp(px, py, theta, perm, { ...o, epochs: 2, device: "cpu" })).rejects.toThrow(/perm has 4 values, not 8/);
    await expect(async () =>
      addon.trainMlp(
        px,
        py,
        theta,
        perm.map(() => 9),
        { ...o, device: "cpu" },
      ),
    ).rejects.toThrow(/perm holds a row index out of range/);
  });
});
