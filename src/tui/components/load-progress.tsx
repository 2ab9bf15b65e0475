import { Box, Text } from "ink";
import type { LoadProgress } from "../../commands/chat.js";
import { formatBytes, formatInt, formatMs, formatPercent } from "../format.js";
import { Bar } from "./bar.js";
import { Spinner } from "./spinner.js";

export interface LoadProgressViewProps {
  progress: LoadProgress | null;
  modelName: string;
  /** When the current phase started (for speed and time left). */
  phaseStartedAt: number;
  /** Where the current phase started (tokens already held when evaluation began). */
  phaseStartedDone: number;
  now: number;
}

/** What loading is doing now: reading a document page by page, loading the weights, evaluating the documents. */
export function LoadProgressView({ progress, modelName, phaseStartedAt, phaseStartedDone, now }: LoadProgressViewProps) {
  let label = `starting`;
  let fraction: number | null = null;
  let detail = "";
  if (progress?.phase === "document") {
    const of = progress.count > 1 ? ` (${progress.index + 1} of ${progress.count})` : "";
    label = `reading ${progress.name}${of}`;
    if (progress.pages) {
      fraction = (progress.page ?? 0) / progress.pages;
      detail = `page ${progress.page ?? 0} of ${progress.pages}`;
    }
  } else if (progress?.phase === "model") {
    label = `loading ${modelName}`;
    fraction = progress.fraction;
    detail = formatPercent(progress.fraction);
  } else if (progress?.phase === "evaluate") {
    label = "evaluating the documents";
    fraction = progress.total > 0 ? progress.done / progress.total : 0;
    detail = `${formatInt(progress.done)} / ${formatInt(progress.total)} tokens`;
    const elapsed = now - phaseStartedAt;
    const done = progress.done - phaseStartedDone;
    if (elapsed > 500 && done > 0) {
      const rate = (done * 1000) / elapsed;
      const left = ((progress.total - progress.done) / rate) * 1000;
      detail += ` · ${formatInt(rate)} tok/s · ${formatMs(left)} left`;
    }
    if (progress.kv && progress.kv.bytesFullEquivalent > 0) {
      const saved = 1 - progress.kv.bytesInUse / progress.kv.bytesFullEquivalent;
      detail += ` · KV ${formatBytes(progress.kv.bytesInUse)}${saved > 0 ? ` (${formatPercent(saved)} saved)` : ""}`;
    }
  }
  return (
    <Box>
      <Spinner />
      <Text> {label} </Text>
      {fraction !== null ? <Bar fraction={fraction} width={24} /> : null}
      {detail ? <Text dimColor> {detail}</Text> : null}
      <Text dimColor>{"  (Ctrl-C cancels)"}</Text>
    </Box>
  );
}
