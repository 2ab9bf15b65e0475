// The KV cache as the chat screen states it, in one place, so that the status bar and the /kv panel say the same
// thing and a change of the engine's KV statistics is one edit here.
import type { KvStats } from "../engine/session.js";
import { formatBytes, formatInt, formatPercent } from "./format.js";

/** Bytes of the KV blocks in use: the pairs kept (the full cache: its buffer). */
export function kvInUseBytes(kv: KvStats): number {
  return kv.bytesInUse;
}

/** The memory the pool really holds (its committed chunks; the full cache: its buffer). */
export function kvHeldBytes(kv: KvStats): number {
  return kv.poolBytes;
}

/** " in VRAM" when the pool lives in a GPU's memory (kvzap on CUDA), else "". */
export function kvHeldWhere(kv: KvStats): string {
  return kv.poolDevice !== undefined && kv.poolDevice !== null ? " in VRAM" : "";
}

/** "GPU 12.3 GiB of 139 GiB used (driver)": the device as its driver reports it, or null without one. */
export function kvGpuText(kv: KvStats): string | null {
  if (!kv.gpu) return null;
  return `${kv.gpu.name} ${formatBytes(kv.gpu.usedBytes)} of ${formatBytes(kv.gpu.totalBytes)} used (driver, whole device)`;
}

/** What a full cache would hold for the same tokens. */
export function kvFullBytes(kv: KvStats): number {
  return kv.bytesFullEquivalent;
}

/**
 * The KV figure, longest form first: "KV 1.30 MiB in use (26% of 5.00 MiB) · 4.00 MiB held" when pairs were
 * dropped (the blocks in use against a full cache of the same tokens, and the memory the pool really holds), then
 * "KV 4.00 MiB held"; else "KV 5.00 MiB".
 */
export function kvMemoryForms(kv: KvStats): string[] {
  const inUse = kvInUseBytes(kv);
  const full = kvFullBytes(kv);
  const share = full > 0 ? inUse / full : 1;
  if (inUse < full && share <= 0.995) {
    return [
      `KV ${formatBytes(inUse)} in use (${formatPercent(share)} of ${formatBytes(full)}) · ${formatBytes(kvHeldBytes(kv))} held${kvHeldWhere(kv)}`,
      `KV ${formatBytes(kvHeldBytes(kv))} held${kvHeldWhere(kv)}`,
    ];
  }
  return [`KV ${formatBytes(kvHeldBytes(kv))}`];
}

export function kvMemoryText(kv: KvStats): string {
  return kvMemoryForms(kv)[0];
}

function tauText(x: number): string {
  if (Math.abs(x) >= 1e6) return x > 0 ? "+∞" : "−∞";
  return x.toFixed(2).replace("-", "−");
}

/** "kvzap τ −4.00", "kvzap τ −4.00→−3.20" (raised by a budget), "window 128", "full". */
export function kvPolicyText(kv: KvStats): string {
  if (kv.policy === "kvzap" && kv.tau !== undefined) {
    const raised = kv.tauEffective !== undefined && kv.tauEffective !== kv.tau;
    return `kvzap τ ${tauText(kv.tau)}${raised ? `→${tauText(kv.tauEffective!)}` : ""}`;
  }
  if (kv.policy === "window" && kv.window !== undefined) return `window ${formatInt(kv.window)}`;
  return kv.policy;
}

/** "1,234 dropped" (and how many of them the budget took), or null when the policy drops nothing. */
export function kvEvictedText(kv: KvStats): string | null {
  if (kv.evicted === undefined) return null;
  const budget = kv.budgetEvicted !== undefined && kv.budgetEvicted > 0 ? ` (${formatInt(kv.budgetEvicted)} by the budget)` : "";
  return `${formatInt(kv.evicted)} dropped${budget}`;
}

/** "budget 2.00 MiB", or null when none is set. */
export function kvBudgetText(budgetBytes: number | null | undefined): string | null {
  return budgetBytes === null || budgetBytes === undefined ? null : `budget ${formatBytes(budgetBytes)}`;
}
