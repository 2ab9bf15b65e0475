// The table of `kvzap bench sweep`: per KV type and depth, each engine's rates and memory, with its ratios to stock
// (the rows of one report ran on one machine in one run).
import { formatBytes } from "../base/format.js";
import { caseName, type SweepRow } from "./sweep.js";
import { formatTable } from "./table.js";
import type { SweepReport } from "./sweep-report.js";

function ratio(a: number, b: number | undefined): string {
  return b !== undefined && b > 0 && a > 0 ? `${(a / b).toFixed(2)}x` : "–";
}

function share(a: number, b: number | undefined): string {
  return b !== undefined && b > 0 ? `${((100 * a) / b).toFixed(1)}%` : "–";
}

function rate(x: number): string {
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}

export function sweepTable(r: SweepReport): string {
  const header = [
    "kv",
    "depth",
    "engine",
    "prefill tok/s",
    "vs stock",
    "decode tok/s",
    "vs stock",
    "host ms/tok",
    "KV held",
    "vs stock",
    "peak device",
    "vs stock",
    "session device",
    "vs stock KV",
  ];
  const body: string[][] = [];
  const keyOf = (x: SweepRow) => `${x.kvType}/${x.depth}`;
  const stock = new Map(r.rows.filter((x) => x.engine === "stock").map((x) => [keyOf(x), x]));
  const sorted = [...r.rows].sort((a, b) => a.kvType.localeCompare(b.kvType) || a.depth - b.depth || order(a) - order(b));
  for (const x of sorted) {
    const s = stock.get(keyOf(x));
    const mine = x.engine !== "stock";
    body.push([
      x.kvType,
      String(x.depth),
      caseName(x),
      rate(x.prefillTps),
      mine ? ratio(x.prefillTps, s?.prefillTps) : "",
      rate(x.decodeTps),
      mine ? ratio(x.decodeTps, s?.decodeTps) : "",
      x.decodeHostMsPerToken === null || x.decodeHostMsPerToken === undefined ? "" : x.decodeHostMsPerToken.toFixed(3),
      formatBytes(x.kvBytes),
      mine ? share(x.kvBytes, s?.kvBytes) : "",
      x.peakDeviceBytes === null ? "–" : formatBytes(x.peakDeviceBytes),
      mine && x.peakDeviceBytes !== null ? share(x.peakDeviceBytes, s?.peakDeviceBytes ?? undefined) : "",
      x.sessionDeviceBytes === null ? "–" : formatBytes(x.sessionDeviceBytes),
      x.sessionDeviceBytes === null ? "" : share(x.sessionDeviceBytes, s?.kvBytes),
    ]);
  }
  const lines = [
    `kvzap bench sweep — ${r.model.description} on ${r.device.devices.find((d) => d.type === "gpu")?.description ?? r.device.backend}`,
    `medians: ${r.settings.prefillReps} prefill(s) per depth, ${r.settings.decodeReps} decode segments of ${r.settings.decodeTokens} tokens after each (and ${r.settings.decodeWarmup ?? 0} untimed warm-up tokens before them); host ms/tok: the KV memory's own host work per decoded token (kvzap); KV held: the KV buffer (stock, kvzap-off) or the pool's committed memory (kvzap); peak device: the driver's used memory at its peak less before the model loaded; session device: that peak less before the session was made (its KV and compute buffers)`,
    "",
    formatTable(header, body),
  ];
  if (r.fit24GiB.length > 0) {
    lines.push("", "longest context in 24 GiB (derived from the measured bytes per token above, see the JSON):");
    for (const f of r.fit24GiB) lines.push(`  ${f.kvType} ${f.engine}: ${f.tokens.toLocaleString("en-US")} tokens`);
  }
  return lines.join("\n");
}

function order(x: SweepRow): number {
  return x.engine === "stock" ? 0 : x.engine === "kvzap-off" ? 1 : 2 + (1 - x.keep);
}
