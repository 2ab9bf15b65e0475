import { Box, Text } from "ink";
import type { KvStats } from "../../engine/session.js";
import { formatBytes, formatInt, formatPercent, formatRate } from "../format.js";

export interface StatusBarProps {
  modelName: string;
  contextUsed: number;
  contextSize: number;
  kv: KvStats | null;
  /** Decode speed of the last answer; null before the first. */
  tokensPerSecond: number | null;
  /** Right-hand side: what the keys do now, or a warning ("press Ctrl-C again to exit"). */
  hint: string;
  hintTone?: "dim" | "warning";
}

/**
 * "KV 1.30 MiB in use (26% of 5.00 MiB) · 4.00 MiB held" when pairs were dropped, else "KV 5.00 MiB": the blocks in
 * use against a full cache of the same tokens, and the memory the pool really holds.
 */
export function kvSummary(kv: KvStats): string {
  const share = kv.bytesFullEquivalent > 0 ? kv.bytesInUse / kv.bytesFullEquivalent : 1;
  if (kv.bytesInUse < kv.bytesFullEquivalent && share <= 0.995) {
    return `KV ${formatBytes(kv.bytesInUse)} in use (${formatPercent(share)} of ${formatBytes(kv.bytesFullEquivalent)}) · ${formatBytes(kv.poolBytes)} held`;
  }
  return `KV ${formatBytes(kv.poolBytes)}`;
}

export function StatusBar(p: StatusBarProps) {
  const parts = [
    p.modelName,
    p.tokensPerSecond === null ? null : formatRate(p.tokensPerSecond),
    p.contextSize > 0 ? `ctx ${formatInt(p.contextUsed)}/${formatInt(p.contextSize)}` : null,
    p.kv ? kvSummary(p.kv) : null,
  ].filter((x): x is string => x !== null);
  return (
    <Box borderStyle="single" borderLeft={false} borderRight={false} borderBottom={false} borderDimColor justifyContent="space-between">
      <Box flexShrink={1}>
        <Text wrap="truncate-end">
          {parts.map((part, i) => (
            <Text key={i}>
              {i > 0 ? <Text dimColor> · </Text> : null}
              <Text bold={i === 0} color={i === 0 ? "cyan" : undefined}>
                {part}
              </Text>
            </Text>
          ))}
        </Text>
      </Box>
      <Box flexShrink={0} marginLeft={2}>
        <Text dimColor={p.hintTone !== "warning"} color={p.hintTone === "warning" ? "yellow" : undefined} bold={p.hintTone === "warning"}>
          {p.hint}
        </Text>
      </Box>
    </Box>
  );
}
