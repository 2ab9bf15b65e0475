// `kvzap bench sweep`: one engine configuration (stock llama.cpp, ours with KVzap off, or KVzap keeping a fixed random
// fraction) at several context depths: prefill and decode rates, the KV bytes held and the device's peak memory.
// One configuration runs in one process (commands/sweep.ts spawns them), so that the driver's memory figures belong
// to it alone and the stock engine can be another addon.
import { gpuMemory } from "../engine/compute.js";
import type { KvElementType, KvOptions } from "../engine/kv.js";
import type { Model } from "../engine/model.js";
import type { KvStats } from "../engine/session.js";
import type { Profile } from "../profiles/profile.js";
import { round, summarize, type Summary } from "./stats.js";

export type SweepEngine = "stock" | "kvzap-off" | "kvzap";

/** One configuration: an engine, its kept fraction (1 for the engines that keep everything), a KV element type. */
export interface SweepCase {
  engine: SweepEngine;
  keep: number;
  kvType: KvElementType;
}

export interface SweepSettings {
  /** Context positions per run, ascending: the prompt fills all but the decoded tokens. */
  depths: number[];
  /** Greedy tokens per decode segment; `decodeReps` segments follow each prefill back to back. */
  decodeTokens: number;
  decodeReps: number;
  /** Greedy tokens decoded after each prefill before the timed segments, untimed (as llama-bench's warm-up run): the
   * first steps after a prefill build and capture the decode graphs, and the device's clocks settle. */
  decodeWarmup: number;
  /** Fresh sessions (prefills) per depth. */
  prefillReps: number;
  threads: number;
  batchSize: number;
}

/** One row of the report: medians over the repetitions, and what they were made of. */
export interface SweepRow {
  engine: SweepEngine;
  keep: number;
  depth: number;
  kvType: KvElementType;
  prefillTps: number;
  decodeTps: number;
  /** The KV storage's physical memory after the run: stock and kvzap-off their KV buffer, kvzap its pool's committed chunks. */
  kvBytes: number;
  /** Peak of the device's used memory (driver) during the runs at this depth, less what it used before the model loaded. */
  peakDeviceBytes: number | null;
  /** The same peak less what the device used just before the session was made: the session's own memory (its KV
   * storage and compute buffers), from the driver. */
  sessionDeviceBytes: number | null;
  promptTokens: number;
  prefill: Summary;
  decode: Summary;
  /** Pairs kept against what the full cache holds for the same tokens. */
  kvBytesInUse: number;
  kvBytesFullEquivalent: number;
  kvBytesFullAllocation: number;
  evicted: number;
  decodedTokens: number;
  /** kvzap: wall ms per decoded token of the KV memory's own host work (decisions, moves, table sync, graph inputs),
   * the median over the decode segments; null for stock and kvzap-off. */
  decodeHostMsPerToken: number | null;
  /** kvzap: wall ms per prompt token of the KV memory's own host work during the prefill, the median over the
   * prefills; null for stock and kvzap-off. */
  prefillHostMsPerToken?: number | null;
}

export type SweepEvent =
  | { type: "phase"; what: string; seconds: number }
  | { type: "prefill-progress"; depth: number; done: number; total: number; seconds: number }
  | { type: "prefill"; depth: number; rep: number; tps: number; hostMsPerToken: number | null }
  | { type: "decode"; depth: number; rep: number; segment: number; tps: number }
  | { type: "row"; row: SweepRow };

export function caseName(c: SweepCase): string {
  return c.engine === "kvzap" ? `kvzap@${c.keep}` : c.engine;
}

/** The session's KV options of a case; kvzap runs the profile's surrogate, then keeps a seeded random fraction. */
export function caseKv(c: SweepCase, profile: Profile | undefined): KvOptions {
  if (c.engine !== "kvzap") return { policy: "full" };
  if (!profile) throw new Error("a kvzap case needs a profile (its surrogate runs, as in real use)");
  return { policy: "random", keep: c.keep, seed: 0, profile };
}

/**
 * Samples the device's used memory (the driver's figure) every `everyMs` while runs go on (the native work runs off
 * the JS thread), and at every mark; a CPU build samples nothing.
 */
export class DeviceSampler {
  private peak = 0;
  private timer: NodeJS.Timeout | null = null;
  readonly baseline: number | null;

  constructor(private readonly everyMs = 20) {
    this.baseline = gpuMemory()?.usedBytes ?? null;
  }

  start(): void {
    this.peak = 0;
    this.mark();
    if (this.baseline !== null) this.timer = setInterval(() => this.mark(), this.everyMs);
  }

  mark(): void {
    const g = this.baseline !== null ? gpuMemory() : undefined;
    if (g && g.usedBytes > this.peak) this.peak = g.usedBytes;
  }

  /** The device's used memory now (driver); null without a GPU. */
  now(): number | null {
    return this.baseline === null ? null : (gpuMemory()?.usedBytes ?? null);
  }

  /** The device's used memory at its peak since start(); null without a GPU. */
  stop(): number | null {
    this.mark();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    return this.baseline === null ? null : this.peak;
  }
}

/** The prompt of a depth: every position but the decoded ones (and the last sampled token, which is never decoded). */
export function promptLength(depth: number, s: Pick<SweepSettings, "decodeTokens" | "decodeReps" | "decodeWarmup">): number {
  return depth - s.decodeTokens * s.decodeReps - s.decodeWarmup - 1;
}

export async function measureCase(
  model: Model,
  tokens: readonly number[],
  c: SweepCase,
  profile: Profile | undefined,
  s: SweepSettings,
  sampler: DeviceSampler,
  onEvent: (e: SweepEvent) => void = () => {},
): Promise<SweepRow[]> {
  const rows: SweepRow[] = [];
  for (const depth of s.depths) {
    const n = promptLength(depth, s);
    if (n < 1 || n > tokens.length) throw new Error(`depth ${depth}: the prompt would be ${n} tokens (${tokens.length} available)`);
    const prompt = tokens.slice(0, n);
    const prefill: number[] = [];
    const decode: number[] = [];
    let decoded = 0;
    const hostPerToken: number[] = [];
    const prefillHost: number[] = [];
    let last: KvStats | null = null;
    const before = sampler.now();
    sampler.start();
    for (let rep = 0; rep < s.prefillReps; rep++) {
      const t0 = Date.now();
      const session = await model.createSession({
        contextSize: depth,
        batchSize: s.batchSize,
        // the same ubatches for every engine (an evicting session defaults to smaller ones)
        ubatchSize: s.batchSize,
        threads: s.threads,
        kvType: c.kvType,
        kv: caseKv(c, profile),
      });
      onEvent({ type: "phase", what: `depth ${depth}: session made`, seconds: (Date.now() - t0) / 1000 });
      try {
        // where a long prefill spends its time: a line at every eighth of the prompt
        const t1 = Date.now();
        let next = 1;
        const p = await session.setPrompt(prompt, {
          onProgress: (done, total) => {
            if (done < (total * next) / 8) return;
            while (done >= (total * next) / 8) next++;
            onEvent({ type: "prefill-progress", depth, done, total, seconds: (Date.now() - t1) / 1000 });
          },
        });
        sampler.mark();
        const tps = p.ms > 0 ? (p.evaluated * 1000) / p.ms : 0;
        prefill.push(tps);
        // a fresh session: its host time so far is the prefill's
        const hostMs = c.engine === "kvzap" ? session.kvStats().hostMs : undefined;
        const hostPer = hostMs !== undefined && p.evaluated > 0 ? hostMs / p.evaluated : null;
        if (hostPer !== null) prefillHost.push(hostPer);
        onEvent({ type: "prefill", depth, rep, tps, hostMsPerToken: hostPer });
        if (s.decodeWarmup > 0) await session.generate(session.tokens, { maxTokens: s.decodeWarmup + 1, temperature: 0 });
        for (let seg = 0; seg < s.decodeReps; seg++) {
          // each segment continues the last: the memory is reused whole, only the new tokens are decoded
          const host0 = session.kvStats().hostMs;
          const r = await session.generate(session.tokens, { maxTokens: s.decodeTokens + 1, temperature: 0 });
          const k = r.stopReason === "eog" ? r.tokens.length : Math.max(0, r.tokens.length - 1);
          decoded += k;
          const dt = r.stats.decodeMs > 0 ? (k * 1000) / r.stats.decodeMs : 0;
          decode.push(dt);
          const host1 = session.kvStats().hostMs;
          if (host0 !== undefined && host1 !== undefined && k > 0) hostPerToken.push((host1 - host0) / k);
          onEvent({ type: "decode", depth, rep, segment: seg, tps: dt });
          sampler.mark();
        }
        last = session.kvStats();
      } finally {
        const t2 = Date.now();
        session.dispose();
        onEvent({ type: "phase", what: `depth ${depth}: session freed`, seconds: (Date.now() - t2) / 1000 });
      }
    }
    const peak = sampler.stop();
    const pf = rounded(summarize(prefill));
    const dc = rounded(summarize(decode));
    const row: SweepRow = {
      engine: c.engine,
      keep: c.keep,
      depth,
      kvType: c.kvType,
      prefillTps: pf.median,
      decodeTps: dc.median,
      kvBytes: last?.poolBytes ?? 0,
      peakDeviceBytes: peak !== null && sampler.baseline !== null ? Math.max(0, peak - sampler.baseline) : null,
      sessionDeviceBytes: peak !== null && before !== null ? Math.max(0, peak - before) : null,
      promptTokens: n,
      prefill: pf,
      decode: dc,
      kvBytesInUse: last?.bytesInUse ?? 0,
      kvBytesFullEquivalent: last?.bytesFullEquivalent ?? 0,
      kvBytesFullAllocation: last?.bytesFullAllocation ?? 0,
      evicted: last?.evicted ?? 0,
      decodedTokens: decoded,
      decodeHostMsPerToken: c.engine === "kvzap" && hostPerToken.length > 0 ? round(summarize(hostPerToken).median, 4) : null,
      prefillHostMsPerToken: prefillHost.length > 0 ? round(summarize(prefillHost).median, 5) : null,
    };
    rows.push(row);
    onEvent({ type: "row", row });
  }
  return rows;
}

function rounded(x: Summary): Summary {
  return { median: round(x.median, 5), min: round(x.min, 5), max: round(x.max, 5), all: x.all.map((v) => round(v, 5)) };
}
