import { Text } from "ink";

const PARTIAL = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];

/** A horizontal bar `width` cells wide, filled to `fraction` in eighths of a cell. */
export function barText(fraction: number, width: number): { filled: string; empty: string } {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const eighths = Math.round(f * width * 8);
  const full = Math.floor(eighths / 8);
  const part = PARTIAL[eighths % 8];
  const filled = "█".repeat(full) + part;
  return { filled, empty: "░".repeat(Math.max(0, width - full - (part ? 1 : 0))) };
}

export function Bar({ fraction, width, color = "cyan" }: { fraction: number; width: number; color?: string }) {
  const { filled, empty } = barText(fraction, width);
  return (
    <Text>
      <Text color={color}>{filled}</Text>
      <Text dimColor>{empty}</Text>
    </Text>
  );
}
