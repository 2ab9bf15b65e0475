// One engine's greedy trace, for comparing engines that live in different addons (stock llama.cpp and ours cannot
// share a process): the prompt, N greedy tokens, then the same N+1 steps teacher-forced on a reference sequence
// (every engine sees the same prefixes, so one near-tie does not compound), with the top-2 margin of each step.
//   KVZAP_ADDON=... node scripts/gpu/greedy-trace.mjs MODEL TEXT OUT.json [kv-json] [reference.json]
//   node scripts/gpu/greedy-trace.mjs --compare A.json B.json
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { maxRelDiff } from "./compare.mjs";

if (process.argv[2] === "--compare") {
  const [a, b] = process.argv.slice(3).map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
  let same = 0;
  while (same < a.tokens.length && a.tokens[same] === b.tokens[same]) same++;
  const forced = a.forced.map((x, i) => ({ i, a: x, b: b.forced[i] }));
  const differ = forced.filter((x) => x.a.top !== x.b.top);
  const tol = 2 ** -10; // f16's relative precision: a margin under tol · |logit| is a tie at f16
  const ties = differ.filter((x) => Math.min(x.a.margin, x.b.margin) <= tol * Math.max(1, Math.abs(x.a.topLogit)) * 8);
  console.log(
    `${a.label} vs ${b.label}: free-running greedy tokens identical for the first ${same} of ${a.tokens.length}; ` +
      `teacher-forced argmax agrees at ${forced.length - differ.length} of ${forced.length} steps; ` +
      `${differ.length} differ, ${ties.length} of them at a near-tie (top-2 margin within 8 f16 ulps of the logit); ` +
      `max relative logit difference over the forced steps ${Math.max(...forced.map((x) => maxRelDiff(x.a.logits, x.b.logits))).toExponential(2)}`,
  );
  for (const x of differ.slice(0, 8))
    console.log(`  step ${x.i}: ${a.label} ${x.a.top} (margin ${x.a.margin.toExponential(2)}), ${b.label} ${x.b.top} (margin ${x.b.margin.toExponential(2)})`);
  process.exit(same === a.tokens.length ? 0 : 1);
}

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");
const load = (p) => import(pathToFileURL(path.join(root, "dist", p)).href);
const { Model } = await load("engine/model.js");
const { loadAddon } = await load("engine/addon.js");
const { loadProfile } = await load("profiles/profile.js");

const [file, textFile, out, kvJson, refFile] = process.argv.slice(2);
const N = 32;
const CTX = 8192;
const kvSpec = kvJson ? JSON.parse(kvJson) : { policy: "full" };
const kv = kvSpec.profile ? { ...kvSpec, profile: await loadProfile(kvSpec.profile) } : kvSpec;
const sys = loadAddon().systemInfo();
const model = await Model.load(file);
const prompt = model.tokenize(fs.readFileSync(textFile, "utf8").slice(2000, 2000 + 14000)).slice(0, 3500);

function top2(logits) {
  let a = -1,
    b = -1;
  for (let i = 0; i < logits.length; i++) {
    if (a < 0 || logits[i] > logits[a]) {
      b = a;
      a = i;
    } else if (b < 0 || logits[i] > logits[b]) b = i;
  }
  return { top: a, topLogit: logits[a], margin: logits[a] - logits[b] };
}
const s = await model.createSession({ contextSize: CTX, batchSize: 512, kv });
const free = await s.generate(prompt, { maxTokens: N, temperature: 0 });
s.dispose();
const ref = refFile ? JSON.parse(fs.readFileSync(refFile, "utf8")).tokens : free.tokens;
const f = await model.createSession({ contextSize: CTX, batchSize: 512, kv });
const forced = [];
await f.setPrompt(prompt);
for (let i = 0; i <= ref.length; i++) {
  const logits = f.logits();
  forced.push({ ...top2(logits), logits: Array.from(logits.slice(0, 4096)) });
  if (i < ref.length) await f.setPrompt([...f.tokens, ref[i]]);
}
f.dispose();
model.dispose();
const label = `${sys.engine}${kvSpec.policy !== "full" ? `:${kvSpec.policy}${kvSpec.tau !== undefined ? `@${kvSpec.tau}` : ""}` : ""}`;
fs.writeFileSync(out, JSON.stringify({ label, backend: sys.backend, promptTokens: prompt.length, tokens: free.tokens, forced }));
console.log(`${label} (${sys.backend}): ${free.tokens.length} greedy tokens after a ${prompt.length}-token prompt → ${out}`);
