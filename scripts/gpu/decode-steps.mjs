// One engine's decode steps at a depth, for step-profile.sh: a prompt of DEPTH tokens from the bench text, 8 greedy
// tokens that warm the decode graphs up, then STEPS more in one generate call; prints the wall ms per decoded token
// and, for kvzap, the KV memory's host ms per token (stats.kv.hostMs), and how many steps reused the last graph. Under ncu, a window of launches late in the
// decode steps is what step-kernels.py sums per step. With KVZAP_PHASE_MARKS=FILE it appends each phase's wall-clock
// span (ns since the epoch) to FILE as a JSON line, and pauses 200 ms between phases, for trace-steps.py.
//   KVZAP_ADDON=... node scripts/gpu/decode-steps.mjs MODEL DEPTH STEPS ENGINE
//   ENGINE: stock | kvzap-off | kvzap@FRACTION (the sweep's cases: a random-weight surrogate runs, a seeded random
//   fraction is kept)
import { appendFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");
const load = (p) => import(pathToFileURL(path.join(root, "dist", p)).href);
const { Model } = await load("engine/model.js");
const { readBenchText, promptTokens } = await load("bench/prompt.js");
const { benchProfile } = await load("bench/profile.js");

const [file, depthArg, stepsArg, engine] = process.argv.slice(2);
const depth = Number(depthArg);
const steps = Number(stepsArg);
if (!file || !(depth > 0) || !(steps > 0) || !engine) {
  console.error("usage: node scripts/gpu/decode-steps.mjs MODEL DEPTH STEPS stock|kvzap-off|kvzap@F");
  process.exit(2);
}
let kv = { policy: "full" };
let cleanup = async () => {};
if (engine.startsWith("kvzap@")) {
  const p = await benchProfile(file);
  cleanup = p.cleanup;
  kv = { policy: "random", keep: Number(engine.slice(6)), seed: 0, profile: p.profile };
}
const model = await Model.load(file);
const { text } = await readBenchText(undefined); // the bench default (remote.sh puts the corpora in place)
const prompt = promptTokens(model, text, depth);
const s = await model.createSession({ contextSize: depth + steps + 24, batchSize: 512, ubatchSize: 512, kv });
const marks = process.env.KVZAP_PHASE_MARKS;
const now = () => Math.round((performance.timeOrigin + performance.now()) * 1e6);
const phase = async (name, count, run) => {
  if (marks) await new Promise((done) => setTimeout(done, 200));
  const t0 = now();
  const out = await run();
  if (marks) appendFileSync(marks, JSON.stringify({ engine, depth, phase: name, count, t0, t1: now() }) + "\n");
  return out;
};
await phase("prefill", Math.ceil(prompt.length / 512), () => s.setPrompt(prompt));
// the first decode steps build and capture the graphs
await phase("warmup", 9, () => s.generate(s.tokens, { maxTokens: 9, temperature: 0 }));
const host0 = s.kvStats().hostMs ?? 0;
const reused0 = s.info.graphsReused;
const r = await phase("decode", steps, () => s.generate(s.tokens, { maxTokens: steps + 1, temperature: 0 }));
if (marks) await new Promise((done) => setTimeout(done, 200));
const k = Math.max(1, r.tokens.length - 1);
const host1 = s.kvStats().hostMs ?? 0;
const reused = s.info.graphsReused - reused0;
console.log(
  JSON.stringify({
    engine,
    depth,
    steps: k,
    msPerToken: +(r.stats.decodeMs / k).toFixed(4),
    hostMsPerToken: kv.policy === "full" ? null : +((host1 - host0) / k).toFixed(4),
    graphsReused: `${reused} of ${k + 1}`, // llama.cpp's graph reuse over the steps (the last token's is counted too)
  }),
);
s.dispose();
model.dispose?.();
await cleanup();
