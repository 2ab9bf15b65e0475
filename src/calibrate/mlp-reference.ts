// The MLP surrogate's AdamW training as a plain float64 loop: the reference that the addon's CPU and CUDA trainers are
// checked against (src/calibrate/fit.test.ts here, scripts/gpu/check-calibration.mjs on the GPU machine).
import { erf, geluErf, type MlpProblem, type MlpTrained } from "./fit.js";

const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** d gelu_erf / dz = Φ(z) + z φ(z). */
function geluErfGrad(z: number): number {
  return 0.5 * (1 + erf(z / Math.SQRT2)) + z * INV_SQRT_2PI * Math.exp(-0.5 * z * z);
}

/**
 * One AdamW step per batch of rows in perm order: the mean squared error's gradient, the global norm clipped, a cosine
 * learning rate over all steps, decoupled weight decay (PyTorch's AdamW).
 */
export function trainMlpReference(P: MlpProblem): MlpTrained {
  const { x: xs, y: ys, n, d, m, h } = P;
  const oW1 = 0;
  const oB1 = m * d;
  const oW2 = oB1 + m;
  const oB2 = oW2 + h * m;
  const size = oB2 + h;
  const theta = Float32Array.from(P.theta);
  const grad = new Float64Array(size);
  const m1 = new Float64Array(size);
  const m2 = new Float64Array(size);
  const B = Math.max(1, Math.min(P.batch, n));
  const total = P.epochs * Math.ceil(n / B);
  const z1 = new Float64Array(B * m);
  const a1 = new Float64Array(B * m);
  const dout = new Float64Array(B * h);
  const dz = new Float64Array(m);
  const epochLoss = new Float64Array(P.epochs);
  let step = 0;
  for (let epoch = 0; epoch < P.epochs; epoch++) {
    const perm = P.perm.subarray(epoch * n, (epoch + 1) * n);
    let lossSum = 0;
    for (let start = 0; start < n; start += B) {
      const rows = Math.min(B, n - start);
      grad.fill(0);
      // forward
      for (let r = 0; r < rows; r++) {
        const xo = perm[start + r] * d;
        for (let j = 0; j < m; j++) {
          let acc = theta[oB1 + j];
          const wo = oW1 + j * d;
          for (let i = 0; i < d; i++) acc += theta[wo + i] * xs[xo + i];
          z1[r * m + j] = acc;
          a1[r * m + j] = geluErf(acc);
        }
        const yo = perm[start + r] * h;
        for (let k = 0; k < h; k++) {
          let acc = theta[oB2 + k];
          const wo = oW2 + k * m;
          for (let j = 0; j < m; j++) acc += theta[wo + j] * a1[r * m + j];
          const e = acc - ys[yo + k];
          lossSum += e * e;
          dout[r * h + k] = (2 * e) / (rows * h);
        }
      }
      // backward
      for (let r = 0; r < rows; r++) {
        const xo = perm[start + r] * d;
        for (let k = 0; k < h; k++) {
          const g = dout[r * h + k];
          grad[oB2 + k] += g;
          const wo = oW2 + k * m;
          for (let j = 0; j < m; j++) grad[wo + j] += g * a1[r * m + j];
        }
        for (let j = 0; j < m; j++) {
          let da = 0;
          for (let k = 0; k < h; k++) da += theta[oW2 + k * m + j] * dout[r * h + k];
          dz[j] = da * geluErfGrad(z1[r * m + j]);
        }
        for (let j = 0; j < m; j++) {
          const g = dz[j];
          if (g === 0) continue;
          grad[oB1 + j] += g;
          const wo = oW1 + j * d;
          for (let i = 0; i < d; i++) grad[wo + i] += g * xs[xo + i];
        }
      }
      // clip, then AdamW with a cosine learning rate
      let norm2 = 0;
      for (let i = 0; i < size; i++) norm2 += grad[i] * grad[i];
      const norm = Math.sqrt(norm2);
      const scale = norm > P.clip ? P.clip / (norm + 1e-6) : 1;
      step++;
      const lr = 0.5 * P.lr * (1 + Math.cos((Math.PI * (step - 1)) / total));
      const c1 = 1 - Math.pow(P.beta1, step);
      const c2 = 1 - Math.pow(P.beta2, step);
      for (let i = 0; i < size; i++) {
        const g = grad[i] * scale;
        m1[i] = P.beta1 * m1[i] + (1 - P.beta1) * g;
        m2[i] = P.beta2 * m2[i] + (1 - P.beta2) * g * g;
        const t = theta[i] * (1 - lr * P.weightDecay);
        theta[i] = t - (lr * (m1[i] / c1)) / (Math.sqrt(m2[i] / c2) + P.eps);
      }
    }
    epochLoss[epoch] = lossSum / (n * h);
  }
  return { theta, epochLoss };
}
