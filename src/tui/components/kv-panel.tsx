import { Box, Text } from "ink";
import type { KvLayerStats, KvStats } from "../../engine/session.js";
import { formatBytes, formatInt, formatPercent } from "../format.js";
import { kvBudgetText, kvEvictedText, kvFullBytes, kvGpuText, kvHeldBytes, kvHeldWhere, kvInUseBytes, kvPolicyText } from "../kv-figures.js";
import { Bar } from "./bar.js";

export interface KvPanelProps {
  kv: KvStats;
  /** The KV budget in bytes, or null when none is set. */
  kvBudget?: number | null;
  contextUsed: number;
  contextSize: number;
  /** Columns available. */
  width: number;
}

/** Up to this many layers get one labelled horizontal bar each; more get one vertical bar each, side by side. */
const HORIZONTAL_MAX = 12;
const CHART_ROWS = 4;
const LEVELS = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];

function fractionOf(l: KvLayerStats): number {
  return l.bytesFullEquivalent > 0 ? l.bytesInUse / l.bytesFullEquivalent : 0;
}

/** The rows of a vertical bar chart, top row first: one column per value in [0, 1]. */
export function verticalBars(fractions: readonly number[], rows: number, gap: string): string[] {
  const out: string[] = [];
  for (let r = rows - 1; r >= 0; r--) {
    out.push(
      fractions
        .map((f) => {
          const eighths = Math.round(Math.min(1, Math.max(0, f)) * rows * 8) - r * 8;
          return LEVELS[Math.min(8, Math.max(0, eighths))];
        })
        .join(gap),
    );
  }
  return out;
}

/**
 * The KV memory: the policy (τ, the effective τ under a budget, the budget); context fill; the pairs held (blocks in
 * use) against what a full cache holds for the same tokens, and the pairs dropped; the memory the process really
 * holds for them (the pool's committed chunks) against what a full cache of the context size allocates; and, when
 * known, each layer.
 */
export function KvPanel({ kv, kvBudget, contextUsed, contextSize, width }: KvPanelProps) {
  const barWidth = Math.max(10, Math.min(40, width - 48));
  const inUse = kvInUseBytes(kv);
  const full = kvFullBytes(kv);
  const total = full > 0 ? inUse / full : 0;
  const held = kv.bytesFullAllocation > 0 ? kvHeldBytes(kv) / kv.bytesFullAllocation : 0;
  const layers = kv.layers ?? [];
  const budget = kvBudgetText(kvBudget);
  const evicted = kvEvictedText(kv);
  const gpu = kvGpuText(kv);
  const heldLabel = kvHeldWhere(kv) ? "VRAM " : "held ";
  return (
    <Box flexDirection="column" borderStyle="round" borderColor="gray" paddingX={1} width={Math.min(width, 100)}>
      <Text wrap="truncate-end">
        <Text bold>KV memory</Text>
        <Text dimColor> · policy </Text>
        <Text color="cyan">{kvPolicyText(kv)}</Text>
        {budget ? <Text dimColor> · {budget}</Text> : null}
      </Text>
      <Text>
        <Text>{"context ".padEnd(9)}</Text>
        <Bar fraction={contextSize > 0 ? contextUsed / contextSize : 0} width={barWidth} color="blue" />
        <Text>
          {" "}
          {formatInt(contextUsed)} / {formatInt(contextSize)} tokens
        </Text>
      </Text>
      <Text>
        <Text>{"KV ".padEnd(9)}</Text>
        <Bar fraction={total} width={barWidth} color={total < 1 ? "green" : "cyan"} />
        <Text>
          {" "}
          {formatBytes(inUse)} / {formatBytes(full)} ({formatPercent(total)})
        </Text>
      </Text>
      {evicted ? (
        <Text wrap="truncate-end">
          <Text>{"dropped ".padEnd(9)}</Text>
          <Text dimColor>{evicted.replace(/ dropped/, " pairs")}</Text>
        </Text>
      ) : null}
      <Text>
        <Text>{heldLabel.padEnd(9)}</Text>
        <Bar fraction={held} width={barWidth} color={held < 1 ? "green" : "cyan"} />
        <Text>
          {" "}
          {formatBytes(kvHeldBytes(kv))} / {formatBytes(kv.bytesFullAllocation)} (full cache, {formatInt(contextSize)})
        </Text>
      </Text>
      {gpu ? (
        <Text wrap="truncate-end">
          <Text>{"GPU ".padEnd(9)}</Text>
          <Text dimColor>{gpu}</Text>
        </Text>
      ) : null}
      {layers.length > 0 && layers.length <= HORIZONTAL_MAX
        ? layers.map((l, i) => (
            <Text key={i}>
              <Text dimColor>{`layer ${i}`.padEnd(9)}</Text>
              <Bar fraction={fractionOf(l)} width={barWidth} color="green" />
              <Text dimColor>
                {" "}
                {formatBytes(l.bytesInUse)} / {formatBytes(l.bytesFullEquivalent)} ({formatPercent(fractionOf(l))})
              </Text>
            </Text>
          ))
        : null}
      {layers.length > HORIZONTAL_MAX ? <LayerChart layers={layers} width={Math.min(width, 100) - 4} /> : null}
    </Box>
  );
}

function LayerChart({ layers, width }: { layers: readonly KvLayerStats[]; width: number }) {
  const gap = layers.length * 2 - 1 <= width - 9 ? " " : "";
  const rows = verticalBars(layers.map(fractionOf), CHART_ROWS, gap);
  const last = `L${layers.length - 1}`;
  const axisWidth = layers.length + gap.length * (layers.length - 1);
  return (
    <Box flexDirection="column">
      <Text dimColor>per layer (% of the full cache kept):</Text>
      {rows.map((row, i) => (
        <Text key={i}>
          <Text dimColor>{(i === 0 ? "100% " : i === rows.length - 1 ? "  0% " : "     ").padStart(5)}</Text>
          <Text color="green">{row}</Text>
        </Text>
      ))}
      <Text dimColor>
        {"     "}
        {"L0".padEnd(Math.max(2, axisWidth - last.length))}
        {last}
      </Text>
    </Box>
  );
}
