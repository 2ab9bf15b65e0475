import { Box, Text } from "ink";
import type { KvStats } from "../../engine/session.js";
import { formatInt, formatRate } from "../format.js";
import { kvBudgetText, kvEvictedText, kvMemoryForms, kvMemoryText, kvPolicyText } from "../kv-figures.js";

export interface StatusBarProps {
  modelName: string;
  contextUsed: number;
  contextSize: number;
  kv: KvStats | null;
  /** The KV budget in bytes, or null when none is set. */
  kvBudget?: number | null;
  /** Decode speed of the last answer; null before the first. */
  tokensPerSecond: number | null;
  /** Right-hand side: what the keys do now, or a warning ("press Ctrl-C again to exit"). */
  hint: string;
  hintTone?: "dim" | "warning";
  /** Columns of the terminal. */
  width: number;
}

/** "KV 1.30 MiB in use (26% of 5.00 MiB) · 4.00 MiB held" when pairs were dropped, else "KV 5.00 MiB". */
export const kvSummary = kvMemoryText;

interface Field {
  /** The field's forms, longest first; the bar takes a shorter one before it drops the field. */
  forms: string[];
  /** Lower is more important: when the bar is too narrow, the highest numbers shrink and go first. */
  rank: number;
}

const SEPARATOR = " · ";

/**
 * The fields that fit `room` columns, in display order: the least important field first takes its shorter form,
 * then goes, and so on, so what stays is never cut in the middle (`ctx 4…`). Only a lone field that still does not
 * fit is cut at its end (by the Text that draws it).
 */
export function fitFields(fields: readonly Field[], room: number): string[] {
  const kept = fields.map((f) => ({ rank: f.rank, forms: [...f.forms] }));
  const width = () => kept.reduce((w, f, i) => w + [...f.forms[0]].length + (i > 0 ? SEPARATOR.length : 0), 0);
  while (kept.length > 1 && width() > room) {
    let worst = 0;
    for (let i = 1; i < kept.length; i++) if (kept[i].rank > kept[worst].rank) worst = i;
    if (kept[worst].forms.length > 1) kept[worst].forms.shift();
    else kept.splice(worst, 1);
  }
  return kept.map((f) => f.forms[0]);
}

export function statusFields(p: Omit<StatusBarProps, "hint" | "hintTone" | "width">): Field[] {
  const held = p.kv ? kvMemoryForms(p.kv) : null;
  const fields: (Field | null)[] = [
    { forms: [p.modelName], rank: 5 },
    p.tokensPerSecond === null ? null : { forms: [formatRate(p.tokensPerSecond)], rank: 7 },
    p.contextSize > 0 ? { forms: [`ctx ${formatInt(p.contextUsed)}/${formatInt(p.contextSize)}`], rank: 1 } : null,
    p.kv && held ? { forms: held, rank: 2 } : null,
    p.kv && p.kv.policy !== "full" ? { forms: [kvPolicyText(p.kv)], rank: 3 } : null,
    p.kv ? mapText(kvBudgetText(p.kvBudget), 4) : null,
    p.kv ? mapText(kvEvictedText(p.kv), 6) : null,
  ];
  return fields.filter((f): f is Field => f !== null);
}

function mapText(text: string | null, rank: number): Field | null {
  return text === null ? null : { forms: [text, text.replace(/ \(.*\)$/, "")], rank };
}

export function StatusBar(p: StatusBarProps) {
  const hintWidth = p.hint === "" ? 0 : [...p.hint].length + 2;
  // A hint that would leave the fields nothing goes first: the fields are the status.
  const showHint = p.width - hintWidth >= 24;
  const parts = fitFields(statusFields(p), Math.max(1, p.width - (showHint ? hintWidth : 0)));
  return (
    <Box borderStyle="single" borderLeft={false} borderRight={false} borderBottom={false} borderDimColor justifyContent="space-between" width={p.width}>
      <Box flexShrink={1}>
        <Text wrap="truncate-end">
          {parts.map((part, i) => (
            <Text key={i}>
              {i > 0 ? <Text dimColor>{SEPARATOR}</Text> : null}
              <Text bold={i === 0} color={i === 0 ? "cyan" : undefined}>
                {part}
              </Text>
            </Text>
          ))}
        </Text>
      </Box>
      {showHint && p.hint !== "" ? (
        <Box flexShrink={0} marginLeft={2}>
          <Text dimColor={p.hintTone !== "warning"} color={p.hintTone === "warning" ? "yellow" : undefined} bold={p.hintTone === "warning"}>
            {p.hint}
          </Text>
        </Box>
      ) : null}
    </Box>
  );
}
