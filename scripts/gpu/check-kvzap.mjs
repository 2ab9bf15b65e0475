// KVzap checks on the GPU machine, against the CUDA build (KVZAP_ADDON): KVzap at τ = -1e9 against the stock path, and
// against the dense reference (the oracle's checks are in check-calibration.mjs). Prints one line per check; exit code
// 1 if one fails.
import path from "node:path";
import { pathToFileURL } from "node:url";
import { maxRelDiff as rel } from "./compare.mjs";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");
const load = (p) => import(pathToFileURL(path.join(root, "dist", p)).href);
const { Model } = await load("engine/model.js");
const { loadAddon } = await load("engine/addon.js");
const { loadProfile } = await load("profiles/profile.js");

const stories = process.argv[2] ?? ".gpu/stories260K.gguf";
const profileDir = process.argv[3] ?? "profiles/stories260K-linear";
let failed = 0;
const report = (name, ok, detail) => {
  if (!ok) failed++;
  console.log(`${ok ? "PASS" : "FAIL"} ${name}: ${detail}`);
};

const sys = loadAddon().systemInfo();
console.log(`backend ${sys.backend}, devices ${sys.devices.map((d) => d.description).join(", ")}`);

const model = await Model.load(stories);
const profile = await loadProfile(profileDir);
const prompt = model.tokenize("Once upon a time, there was a little girl named Lily. She loved to play outside in the park. ".repeat(12));

async function run(kv) {
  const s = await model.createSession({ contextSize: 1024, batchSize: 64, kv });
  try {
    const t0 = performance.now();
    await s.setPrompt(prompt);
    const prefillMs = performance.now() - t0;
    const logits = s.logits();
    const r = await s.generate(prompt, { maxTokens: 32, temperature: 0 });
    return { logits, tokens: r.tokens, stats: s.kvStats(), prefillMs, decodeTps: r.stats.decodeTokensPerSecond };
  } finally {
    s.dispose();
  }
}
const stock = await run(undefined);
const keepAll = await run({ policy: "kvzap", profile, tau: -1e9 });
report(
  "kvzap tau=-1e9 vs stock (CUDA stock attention, f16 cache)",
  keepAll.tokens.join() === stock.tokens.join() && rel(keepAll.logits, stock.logits) < 1e-2,
  `greedy tokens equal: ${keepAll.tokens.join() === stock.tokens.join()}, max rel logit error ${rel(keepAll.logits, stock.logits).toExponential(2)}`,
);
for (const tau of [-6, -4, 1e9]) {
  // f32 pairs: the reference's stock matmuls would otherwise round the queries to f16
  const kz = await run({ policy: "kvzap", profile, tau, type: "f32" });
  const ref = await run({ policy: "kvzap", profile, tau, type: "f32", reference: true });
  report(
    `kvzap tau=${tau} vs dense reference`,
    kz.tokens.join() === ref.tokens.join() && rel(kz.logits, ref.logits) < 1e-3,
    `rel ${rel(kz.logits, ref.logits).toExponential(2)}, KV ${kz.stats.bytesInUse} / ${kz.stats.bytesFullEquivalent} bytes (${(kz.stats.bytesFullEquivalent / kz.stats.bytesInUse).toFixed(2)}x)`,
  );
}

model.dispose();
process.exitCode = failed > 0 ? 1 : 0;
