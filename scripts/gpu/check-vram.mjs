// The KV pool in VRAM, end to end on the GPU machine with the CUDA build (KVZAP_ADDON): on the testbed model with a
// prompt of a few thousand tokens, KVzap at τ = -1e9 against llama.cpp's stock cache on the GPU (same greedy tokens),
// KVzap at the shipped τ on the GPU against the same on the CPU (--gpu-layers 0: host pool, CPU kernel), and the
// device memory the driver reports (nvidia-smi) while each session holds its prompt. One line per check; exit code 1
// if one fails. KV_TYPE (f16 or q8_0; default f16) is the element type of every session's KV, the stock cache's too.
//   node scripts/gpu/check-vram.mjs MODEL PROFILE_DIR TEXT [KV_TYPE]
import { execSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { maxRelDiff as rel } from "./compare.mjs";

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");
const load = (p) => import(pathToFileURL(path.join(root, "dist", p)).href);
const { Model } = await load("engine/model.js");
const { loadAddon } = await load("engine/addon.js");
const { loadProfile } = await load("profiles/profile.js");

const [file, profileDir, textFile, kvType = "f16"] = process.argv.slice(2);
const CTX = 32768;
let failed = 0;
const report = (name, ok, detail) => {
  if (!ok) failed++;
  console.log(`${ok ? "PASS" : "FAIL"} ${name}: ${detail}`);
};
const usedMiB = () => {
  try {
    return Number(
      execSync("nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits", { stdio: ["ignore", "pipe", "ignore"] })
        .toString()
        .trim()
        .split("\n")[0],
    );
  } catch {
    return NaN; // no driver (a CPU machine): the other checks still run
  }
};
const mib = (b) => (b / 1048576).toFixed(1);

const sys = loadAddon().systemInfo();
console.log(`backend ${sys.backend}, devices ${sys.devices.map((d) => d.description).join(", ")}`);
const gpu = await Model.load(file);
const cpu = await Model.load(file, { gpuLayers: 0 });
const profile = await loadProfile(profileDir);
const prompt = gpu.tokenize(fs.readFileSync(textFile, "utf8").slice(2000, 2000 + 14000)).slice(0, 3500);
console.log(`prompt ${prompt.length} tokens, ctx ${CTX}, KV ${kvType}`);

async function run(model, kv, name) {
  const before = usedMiB();
  const s = await model.createSession({ contextSize: CTX, batchSize: 512, kv, kvType });
  try {
    const created = usedMiB();
    await s.setPrompt(prompt);
    const logits = s.logits();
    const r = await s.generate(prompt, { maxTokens: 32, temperature: 0 });
    const after = usedMiB();
    const st = s.kvStats();
    // with captureHidden every position keeps its score row: the keep/drop decision of each (layer, head, token)
    const scores = kv?.captureHidden ? st.layers.map((_, il) => s.kvScores(il, 0, st.tokens)) : null;
    console.log(
      `${name}: nvidia-smi used ${before} MiB before, ${created} after the session was made, ${after} after prompt + 32 tokens` +
        (st
          ? `; pool committed ${mib(st.poolBytes)} MiB (reserved ${mib(st.poolReservedBytes)}), pairs in use ${mib(st.bytesInUse)} MiB,` +
            ` stock would hold ${mib(st.bytesFullEquivalent)} MiB for these tokens and allocate ${mib(st.bytesFullAllocation)} MiB for ctx ${CTX}`
          : "") +
        `; decode ${r.stats.decodeTokensPerSecond?.toFixed(1)} tok/s`,
    );
    return { logits, tokens: r.tokens, stats: st, scores, vram: { before, created, after } };
  } finally {
    s.dispose();
  }
}
function headsAgree(a, b) {
  let diff = 0,
    total = 0;
  a.layers.forEach((L, il) =>
    L.entries.forEach((n, h) => {
      diff += Math.abs(n - b.layers[il].entries[h]);
      total += Math.max(n, b.layers[il].entries[h]);
    }),
  );
  return 1 - diff / Math.max(1, total);
}

const stock = await run(gpu, undefined, "stock cache, GPU");
const all = await run(gpu, { policy: "kvzap", profile, tau: -1e9 }, "kvzap tau=-1e9, GPU");
const same = (a, b) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};
report(
  "kvzap tau=-1e9 on the GPU vs stock on the GPU",
  all.tokens.join() === stock.tokens.join(),
  `greedy tokens equal: ${all.tokens.join() === stock.tokens.join()} (the first ${same(all.tokens, stock.tokens)} of ${stock.tokens.length} agree), max rel logit diff after the prompt ${rel(all.logits, stock.logits).toExponential(2)}`,
);
const kg = await run(gpu, { policy: "kvzap", profile, captureHidden: true }, "kvzap shipped tau, GPU");
const kc = await run(cpu, { policy: "kvzap", profile, captureHidden: true }, "kvzap shipped tau, CPU");
const agreeCounts = headsAgree(kg.stats, kc.stats);
// decisions per (layer, head, token) for the tokens that have left the window: kept iff score >= tau
const tau = kg.stats.tauEffective ?? kg.stats.tau;
const decided = kg.stats.tokens - kg.stats.window;
let agreeing = 0,
  total = 0;
kg.scores.forEach((g, il) => {
  const c = kc.scores[il];
  const H = g.length / kg.stats.tokens;
  for (let i = 0; i < decided * H; i++, total++) if (g[i] >= tau === c[i] >= tau) agreeing++;
});
const agree = agreeing / Math.max(1, total);
console.log(
  `keep/drop decisions: ${agreeing} of ${total} (layer, head, token) entries agree; kept entries per (layer, head) agree ${(agreeCounts * 100).toFixed(3)}%`,
);
report(
  "kvzap shipped tau, GPU vs CPU",
  rel(kg.logits, kc.logits) < 2e-2 && agree >= 0.999,
  `max rel logit diff ${rel(kg.logits, kc.logits).toExponential(2)}, keep/drop decisions agree on ${(agree * 100).toFixed(3)}% of ${total} (layer, head, token) entries, the first ${same(kg.tokens, kc.tokens)} of ${kc.tokens.length} greedy tokens agree,` +
    ` kept ${((kg.stats.bytesInUse / kg.stats.bytesFullEquivalent) * 100).toFixed(1)}% of the pairs`,
);
// the product's path keeps only a ring of undecided scores (fetched for all layers in one copy): the same decisions
const kr = await run(gpu, { policy: "kvzap", profile }, "kvzap shipped tau, GPU, scores in a ring");
report(
  "kvzap shipped tau on the GPU: ring of scores vs every score kept",
  headsAgree(kr.stats, kg.stats) === 1 && rel(kr.logits, kg.logits) < 1e-5,
  `kept entries per (layer, head) agree ${(headsAgree(kr.stats, kg.stats) * 100).toFixed(3)}%, max rel logit diff ${rel(kr.logits, kg.logits).toExponential(2)}`,
);
const dStock = stock.vram.after - stock.vram.before,
  dKv = kg.vram.after - kg.vram.before;
report(
  "VRAM held: kvzap pool committed only what is kept",
  // a region per layer, committed in 2 MiB chunks for K and for V: at most one partly used chunk of each per layer
  kg.stats.poolBytes <= kg.stats.bytesInUse + kg.stats.layers.length * 2 * 2 * 1048576 + kg.stats.bytesInUse / 16,
  `driver: stock session +${dStock} MiB, kvzap session +${dKv} MiB (compute buffers included in both); pool committed ${mib(kg.stats.poolBytes)} MiB for ${mib(kg.stats.bytesInUse)} MiB of kept pairs`,
);
gpu.dispose();
cpu.dispose();
process.exitCode = failed > 0 ? 1 : 0;
