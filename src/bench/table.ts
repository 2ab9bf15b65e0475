// Plain-text tables of benchmark reports.
import { formatBytes } from "../base/format.js";
import type { MemoryReport, SpeedReport } from "./report.js";
import type { Summary } from "./stats.js";

/** Columns padded to their widest cell; the first column left-aligned, the others right-aligned. */
export function formatTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

function fixed(x: number): string {
  if (!Number.isFinite(x)) return "-";
  return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
}

/** "1234 (1200–1301)" */
export function medianRange(s: Summary, f: (x: number) => string = fixed): string {
  return s.all.length > 1 ? `${f(s.median)} (${f(s.min)}–${f(s.max)})` : f(s.median);
}

/** -1e9 rather than -1000000000. */
export function formatTau(tau: number): string {
  return Math.abs(tau) >= 1e6 ? tau.toExponential().replace("e+", "e") : String(tau);
}

const ratio = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : "-");

function header(r: SpeedReport | MemoryReport): string {
  const d = r.device;
  const load = (l: number[] | null) => (l ? l.join(" ") : "?");
  return [
    `model   ${r.model.path} (${r.model.description})`,
    `device  ${d.backend}, ${d.devices.map((x) => x.description).join(", ")}; ${d.cpuThreads} CPU threads; llama.cpp ${d.llamaVersion}`,
    `load    ${load(d.loadAverage.before)} before, ${load(d.loadAverage.after)} after (1/5/15-minute load averages)`,
  ].join("\n");
}

export function speedTable(r: SpeedReport): string {
  const s = r.settings;
  const profile = s.profile
    ? `; profile: ${s.profile.source}${s.profile.path ? ` ${s.profile.path}` : " (random weights; at τ = -1e9 they do not change the work)"}`
    : "";
  const lines = [
    header(r),
    `setup   context ${s.contextSize}, prompt ${s.promptTokens} tokens, ${s.decodeTokens} greedy tokens, ${s.reps} repetition${s.reps === 1 ? "" : "s"}, ${s.threads} thread${s.threads === 1 ? "" : "s"}, batch ${s.batchSize}${profile}`,
    "",
    formatTable(
      ["variant", "prefill tok/s", "decode tok/s", "KV in use", "full-cache equivalent"],
      r.results.map((x) => [
        x.variant,
        medianRange(x.prefillTokPerSec),
        medianRange(x.decodeTokPerSec),
        formatBytes(x.kvBytesInUse),
        formatBytes(x.kvBytesFullEquivalent),
      ]),
    ),
    "",
    "median (min–max) over repetitions.",
  ];
  const short = r.results.flatMap((x) =>
    x.runs.filter((run) => run.stopReason === "eog").map((run) => `${x.variant} (rep ${run.rep + 1}: ${run.decodedTokens})`),
  );
  if (short.length > 0) lines.push(`NOTE: greedy decoding ended early (end of generation) in ${short.join(", ")}: those decode rates cover fewer tokens.`);
  const ratios = Object.entries(r.ratiosVsBaseline);
  if (r.baseline && ratios.length > 0) {
    lines.push(
      "",
      formatTable(
        [`ratio to ${r.baseline}`, "prefill", "decode"],
        ratios.map(([name, q]) => [`${name} / ${r.baseline}`, medianRange(q.prefill, ratio), medianRange(q.decode, ratio)]),
      ),
      "",
      "ratios of the two runs of each repetition (> 1: faster than the baseline), median (min–max).",
    );
  }
  return lines.join("\n");
}

export function memoryTable(r: MemoryReport): string {
  const s = r.settings;
  const p = s.profile;
  const lines = [
    header(r),
    `setup   context ${s.contextSize}, prompt ${s.promptTokens} tokens, window ${s.window}, ${s.compareTokens} greedy tokens compared; profile: ${p.source}${p.path ? ` ${p.path}` : ""} (${p.kind})`,
  ];
  if (p.source === "random")
    lines.push("WARNING: random surrogate weights: the memory figures are real, but compression and agreement say nothing about a fitted profile.");
  lines.push(
    "",
    formatTable(
      ["τ", "KV in use", "full-cache equivalent", "compression", "kept", "evicted", "agreement", "first mismatch"],
      [
        ["full", formatBytes(r.full.bytesInUse), "(buffer for the context)", "-", "-", "-", "1.000", "-"],
        ...r.results.map((x) => [
          formatTau(x.tau),
          formatBytes(x.bytesInUse),
          formatBytes(x.bytesFullEquivalent),
          `${x.compression.toFixed(2)}x`,
          `${(x.keptFraction * 100).toFixed(1)}%`,
          String(x.evicted),
          x.agreement.toFixed(3),
          `${x.firstMismatch}/${r.full.tokens.length}`,
        ]),
      ],
    ),
    "",
    "measured after the prompt and the first token after it (pairs leave the window when the next batch is planned);",
    "agreement: share of the next greedy tokens equal to the full cache's (fed the full cache's tokens);",
    "first mismatch: identical greedy tokens before the first difference.",
    "",
    formatTable(
      ["run", "KV in use", "pool held", "full cache allocation", "RSS, empty context", "peak RSS", "peak − empty"],
      [
        ["full", formatBytes(r.full.bytesInUse), formatBytes(r.full.poolBytes), formatBytes(r.full.bytesFullAllocation), ...residentCells(r.full.resident)],
        [
          "window",
          formatBytes(r.window.bytesInUse),
          formatBytes(r.window.poolBytes),
          formatBytes(r.window.bytesFullAllocation),
          ...residentCells(r.window.resident),
        ],
        ...r.results.map((x) => [
          `τ ${formatTau(x.tau)}`,
          formatBytes(x.bytesInUse),
          formatBytes(x.poolBytes),
          formatBytes(x.bytesFullAllocation),
          ...residentCells(x.resident),
        ]),
      ],
    ),
    "",
    "pool held: physical memory the KV storage holds (committed 2 MiB chunks; the full cache's buffer is allocated and",
    "filled for the whole context when the session starts). RSS from the OS: the empty context has one batch evaluated",
    "and cleared (compute buffers touched, the pool given back); peak over the prompt and the compared tokens.",
  );
  return lines.join("\n");
}

function residentCells(m: { empty: number; peak: number; kv: number } | null): string[] {
  return m ? [formatBytes(m.empty), formatBytes(m.peak), formatBytes(m.kv)] : ["-", "-", "-"];
}
