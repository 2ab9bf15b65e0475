#!/usr/bin/env node
// Merges `kvzap bench sweep` reports (one per KV type, say) into the committed form, bench/results/<device>-<date>.json
// with rows {engine, keep, depth, kvType, prefillTps, decodeTps, kvBytes, peakDeviceBytes} and the commands that made
// them, and prints the rows as a Markdown table with their ratios to stock (same depth, same KV type, same run).
//   node scripts/bench-results.mjs OUT.json SWEEP.json [SWEEP.json ...]
import fs from "node:fs";

const [out, ...inputs] = process.argv.slice(2);
if (!out || inputs.length === 0) {
  console.error("usage: node scripts/bench-results.mjs OUT.json SWEEP.json [SWEEP.json ...]");
  process.exit(2);
}
const reports = inputs.map((f) => ({ file: f, ...JSON.parse(fs.readFileSync(f, "utf8")) }));
const rows = reports.flatMap((r) => r.rows.map((x) => ({ ...x, run: r.created })));
const merged = {
  kind: "kvzap-bench-results",
  device: reports[0].device,
  model: reports[0].model,
  stock: reports[0].stock,
  runs: reports.map((r) => ({ created: r.created, settings: r.settings, commands: r.commands, failures: r.failures ?? [], fit24GiB: r.fit24GiB })),
  rows: rows.map((x) => ({
    engine: x.engine,
    keep: x.keep,
    depth: x.depth,
    kvType: x.kvType,
    prefillTps: x.prefillTps,
    decodeTps: x.decodeTps,
    kvBytes: x.kvBytes,
    peakDeviceBytes: x.peakDeviceBytes,
    sessionDeviceBytes: x.sessionDeviceBytes,
    kvBytesInUse: x.kvBytesInUse,
    kvBytesFullEquivalent: x.kvBytesFullEquivalent,
    prefill: x.prefill,
    decode: x.decode,
    decodeHostMsPerToken: x.decodeHostMsPerToken ?? null,
    prefillHostMsPerToken: x.prefillHostMsPerToken ?? null,
    run: x.run,
  })),
};
fs.writeFileSync(out, JSON.stringify(merged, null, 2) + "\n");

const gib = (b) => (b / 1024 ** 3).toFixed(2);
const key = (x) => `${x.run}|${x.kvType}|${x.depth}`;
const stock = new Map(rows.filter((x) => x.engine === "stock").map((x) => [key(x), x]));
const name = (x) => (x.engine === "kvzap" ? `kvzap@${x.keep}` : x.engine);
const order = (x) => (x.engine === "stock" ? 0 : x.engine === "kvzap-off" ? 1 : 2 + (1 - x.keep));
const ratio = (a, b) => (b ? `${(a / b).toFixed(2)}x` : "–");
const pct = (a, b) => (b ? `${((100 * a) / b).toFixed(1)}%` : "–");
console.log(
  "| KV | depth | engine | prefill tok/s | vs stock | decode tok/s | vs stock | KV held GiB | vs stock | peak device GiB | session device GiB | vs stock KV |",
);
console.log("|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const x of [...rows].sort((a, b) => a.kvType.localeCompare(b.kvType) || a.depth - b.depth || order(a) - order(b))) {
  const s = stock.get(key(x));
  const mine = x.engine !== "stock";
  console.log(
    `| ${x.kvType} | ${x.depth} | ${name(x)} | ${x.prefillTps.toFixed(0)} | ${mine ? ratio(x.prefillTps, s?.prefillTps) : ""} | ${x.decodeTps.toFixed(1)} | ${mine ? ratio(x.decodeTps, s?.decodeTps) : ""} | ${gib(x.kvBytes)} | ${mine ? pct(x.kvBytes, s?.kvBytes) : ""} | ${x.peakDeviceBytes === null ? "–" : gib(x.peakDeviceBytes)} | ${x.sessionDeviceBytes === null ? "–" : gib(x.sessionDeviceBytes)} | ${pct(x.sessionDeviceBytes ?? 0, s?.kvBytes)} |`,
  );
}
for (const r of reports)
  for (const f of r.fit24GiB ?? [])
    console.log(`24 GiB fit (${f.kvType} ${f.engine}): ${f.tokens} tokens (${f.bytesPerToken} B/token over ${gib(f.fixedBytes)} GiB fixed)`);
