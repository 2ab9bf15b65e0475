// Calibration on CUDA against its CPU twins, on the GPU machine (KVZAP_ADDON = the CUDA build):
//   1. the KVzip+ oracle: CUDA against the float64 brute force and against the CPU oracle, and their times;
//   2. MLP training: the CUDA and CPU trainers against the reference loop on real oracle pairs (same init, same batches);
//   3. with a large model (e.g. Llama-8B shapes from synth_gguf.py): the oracle's CPU and CUDA times on a long prompt.
// Usage: node scripts/gpu/check-calibration.mjs STORIES TESTBED TEXT [ORACLE_CACHE_DIR [LARGE_MODEL]]. Exit code 1 if a
// check fails.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");
const load = (p) => import(pathToFileURL(path.join(root, "dist", p)).href);
const { Model } = await load("engine/model.js");
const { loadAddon } = await load("engine/addon.js");
const { bruteForceOracle, relativeError } = await load("calibrate/oracle-reference.js");
const { OracleCache } = await load("calibrate/cache.js");
const { mlpProblem, trainMlp, fitMlp, predict, r2PerHead } = await load("calibrate/fit.js");
const { trainMlpReference } = await load("calibrate/mlp-reference.js");

const [stories, testbed, textFile, cacheDir, large] = process.argv.slice(2);
let failed = 0;
const report = (name, ok, detail) => {
  if (!ok) failed++;
  console.log(`${ok ? "PASS" : "FAIL"} ${name}: ${detail}`);
};
const sys = loadAddon().systemInfo();
console.log(`backend ${sys.backend}, CUDA devices for calibration: ${sys.cudaDevices}`);
const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
async function timed(fn) {
  const t0 = performance.now();
  const r = await fn();
  return { r, ms: performance.now() - t0 };
}

// ---- 1a. stories260K: CUDA and CPU oracle against the brute force
{
  const model = await Model.load(stories);
  const s = await model.createSession({ contextSize: 256, batchSize: 16, kv: { policy: "kvzap", oracle: true, type: "f32" } });
  const text = "Once upon a time, there was a little dog named Max. Max liked to run.";
  const ctx = model.tokenize(text);
  const rep = model.tokenize(`\n\nRepeat the previous context exactly.\n\n${text}`, { addSpecial: false });
  await s.setPrompt([...ctx, ...rep]);
  const n = ctx.length + rep.length;
  const c = [0, ctx.length];
  const q = [n - (ctx.length - 1), n];
  const want = await bruteForceOracle(s, stories, c, q);
  for (const device of ["cuda", "cpu"]) {
    const got = await s.oracleScores(c, q, device);
    const e = relativeError(got.scores, want);
    report(
      `oracle ${device} vs float64 brute force (stories260K)`,
      got.device === device && e <= 1e-4,
      `relative error ${e.toExponential(2)}, computed on ${got.device}`,
    );
  }
  s.dispose();
  model.dispose();
}

// ---- 1b. a context of `tokens` tokens and its repetition: CUDA against CPU, and times
async function oracleTimes(file, tokens, reps, label) {
  const model = await Model.load(file, { gpuLayers: -1 });
  const text = (await readFile(textFile, "utf8")).slice(20000, 20000 + tokens * 8);
  const ctx = model.tokenize(text).slice(0, tokens);
  const rep = model.tokenize("\n\nRepeat the previous context exactly.\n\n", { addSpecial: false });
  const all = [...ctx, ...rep, ...ctx.slice(1)];
  const s = await model.createSession({ contextSize: all.length + 16, kv: { policy: "kvzap", oracle: true } });
  const c = [0, ctx.length];
  const q = [all.length - (ctx.length - 1), all.length];
  const t = { cpu: [], cuda: [] };
  let cpu, cuda;
  const t0 = performance.now();
  await s.setPrompt(all);
  const forward = performance.now() - t0;
  for (let rep = 0; rep < reps; rep++) {
    for (const device of ["cpu", "cuda"]) {
      const { r, ms } = await timed(() => s.oracleScores(c, q, device));
      t[device].push(ms);
      if (device === "cpu") cpu = r.scores;
      else cuda = r.scores;
    }
  }
  const e = relativeError(cuda, cpu);
  const L = model.info.layers;
  report(`oracle cuda vs cpu (${label}, ${ctx.length}-token context, ${L} layers)`, e <= 1e-4, `relative error ${e.toExponential(2)}`);
  console.log(
    `TIME oracle (${label}), one prompt of ${ctx.length} tokens, ${L} layers: forward pass of ${all.length} tokens into the oracle memory ${forward.toFixed(0)} ms; ` +
      `scores cpu ${median(t.cpu).toFixed(1)} ms, cuda ${median(t.cuda).toFixed(1)} ms (median of ${reps}; cuda/cpu ${(median(t.cuda) / median(t.cpu)).toFixed(4)})`,
  );
  s.dispose();
  model.dispose();
}
await oracleTimes(testbed, 1000, 3, "test-bed");

// ---- 2. MLP training on real pairs from an oracle cache: CUDA and CPU trainers against the reference loop
if (cacheDir) {
  const index = JSON.parse(await readFile(path.join(cacheDir, "index.json"), "utf8"));
  const cache = await OracleCache.open(cacheDir, index.settings);
  const ids = Object.keys(index.prompts);
  const fitIds = ids.slice(0, -1);
  const heldIds = ids.slice(-1);
  const { embeddingSize: D, kvHeads: H, layers } = index.settings;
  for (const l of [0, layers - 1]) {
    const train = await cache.layer(fitIds, l);
    const held = await cache.layer(heldIds, l);
    const pairs = { x: train.x, y: train.y, n: train.n, d: D, h: H };
    // one epoch first: the two trainers take the same steps, so their parameters must stay close
    const one = mlpProblem(pairs, { seed: 7, epochs: 1 }).problem;
    const a = trainMlpReference(one);
    for (const device of ["cuda", "cpu"]) {
      const b = await trainMlp(one, device);
      const e1 = relativeError(b.theta, a.theta);
      report(
        `MLP one epoch, layer ${l}: ${device} vs the reference loop`,
        e1 <= 1e-4,
        `parameters within ${e1.toExponential(2)}, loss ${a.epochLoss[0].toFixed(5)} vs ${b.epochLoss[0].toFixed(5)}`,
      );
    }
    const cpuFit = await timed(() => fitMlp(pairs, { seed: 7, device: "cpu" }));
    const cudaFit = await timed(() => fitMlp(pairs, { seed: 7, device: "cuda" }));
    const r2 = (w) => r2PerHead(predict(w, held.x, held.n, D, H), held.y, held.n, H);
    const ra = r2(cpuFit.r.weights);
    const rb = r2(cudaFit.r.weights);
    const dr = Math.max(...ra.map((v, k) => Math.abs(v - rb[k])));
    report(
      `MLP 15 epochs, layer ${l} (${train.n} pairs): held-out R² cuda vs cpu`,
      dr <= 0.01,
      `cpu ${ra.map((v) => v.toFixed(4)).join("/")}, cuda ${rb.map((v) => v.toFixed(4)).join("/")}, final loss ${cpuFit.r.finalLoss.toFixed(5)} vs ${cudaFit.r.finalLoss.toFixed(5)}`,
    );
    console.log(
      `TIME MLP fit, layer ${l}, ${train.n} pairs, 15 epochs: cpu ${(cpuFit.ms / 1000).toFixed(2)} s, cuda ${(cudaFit.ms / 1000).toFixed(3)} s (cuda/cpu ${(cudaFit.ms / cpuFit.ms).toFixed(4)})`,
    );
  }
}
if (large) await oracleTimes(large, 2000, 1, path.basename(large));
process.exitCode = failed > 0 ? 1 : 0;
