// `kvzap bench memory`: for the full cache, the window and each τ, the KV bytes in use after a prompt against what the
// full cache holds for the same tokens, the memory the pool really holds against a full cache's allocation, the
// process's resident memory (peak over the run, and with an empty context), and how often the next greedy token is
// still the full cache's.
import type { KvOptions } from "../engine/kv.js";
import type { Model } from "../engine/model.js";
import type { KvStats, Session } from "../engine/session.js";
import type { Profile } from "../profiles/profile.js";
import { peakResidentBytes, residentBytes, resetPeakResident } from "./rss.js";
import { round } from "./stats.js";

export interface MemorySettings {
  contextSize: number;
  promptTokens: number;
  /** Greedy tokens compared with the full cache's after the prompt. */
  compareTokens: number;
  threads: number;
  batchSize: number;
  /** kvzap's recent window (default: the profile's). */
  window?: number;
}

export interface LayerMemory {
  bytesInUse: number;
  bytesFullEquivalent: number;
  compression: number;
  /** KV pairs each KV head holds. */
  entries: number[];
}

/**
 * Resident memory of one run, from the OS: `empty` with the context created, one batch evaluated (so that compute
 * buffers are touched) and cleared again; `peak` the most over the prompt and the compared tokens; `kv` their
 * difference, the memory the run's KV needed on top of an empty context. Null where the OS cannot say.
 */
export interface ResidentMemory {
  empty: number;
  peak: number;
  kv: number;
}

/** What a run's KV storage holds (from the memory's own counters; `resident` from the OS). */
export interface PoolMemory {
  /** Physical memory the KV storage holds: the pool's committed chunks (full cache: its buffer). */
  poolBytes: number;
  /** Address space reserved for the pool (a region per layer); costs no memory. */
  poolReservedBytes: number;
  /** What a full cache of the context size allocates. */
  bytesFullAllocation: number;
  resident: ResidentMemory | null;
}

export interface MemoryResult extends PoolMemory {
  tau: number;
  window: number;
  /** Tokens held when measured: the prompt and the first token after it. */
  tokens: number;
  /** Bytes of the blocks in use once the prompt's pairs outside the window were dropped (see measureMemory). */
  bytesInUse: number;
  /** What the full cache holds for the same tokens. */
  bytesFullEquivalent: number;
  /** bytesFullEquivalent / bytesInUse (block rounding makes it a little under 1 when everything is kept). */
  compression: number;
  /** Share of (token, layer, KV head) pairs still held. */
  keptFraction: number;
  evicted: number;
  /**
   * Share of the next `compareTokens` positions where this cache's greedy token is the full cache's, each step fed
   * the full cache's tokens so far (teacher forcing: one early difference does not count again at every later step).
   */
  agreement: number;
  /** Identical greedy tokens before the first difference: how far free-running greedy decoding goes unchanged. */
  firstMismatch: number;
  layers: LayerMemory[];
}

export interface MemoryMeasurement {
  /** The full cache (llama.cpp's buffer, allocated for the whole context) and its greedy continuation. */
  full: PoolMemory & { bytesInUse: number; tokens: number[] };
  /** The window policy (StreamingLLM: 4 sinks and the window) at the same window. */
  window: PoolMemory & { bytesInUse: number; bytesFullEquivalent: number; agreement: number };
  results: MemoryResult[];
}

export type MemoryEvent = { type: "full" } | { type: "window" } | { type: "tau"; tau: number; result: MemoryResult };

export async function measureMemory(
  model: Model,
  prompt: readonly number[],
  taus: readonly number[],
  profile: Profile,
  settings: MemorySettings,
  onEvent: (e: MemoryEvent) => void = () => {},
): Promise<MemoryMeasurement> {
  onEvent({ type: "full" });
  const full = await withSession(model, settings, { policy: "full" }, prompt, async (s, resident) => {
    await s.setPrompt(prompt);
    const tokens = await greedy(s, prompt, settings.compareTokens, null);
    return { bytesInUse: s.kvStats().bytesInUse, tokens: tokens.own, ...poolOf(s.kvStats(), resident()) };
  });
  onEvent({ type: "window" });
  const windowSize = settings.window ?? profile.manifest.window;
  const window = await withSession(model, settings, { policy: "window", window: windowSize }, prompt, async (s, resident) => {
    await s.setPrompt(prompt);
    let st: KvStats | undefined;
    const g = await greedy(s, prompt, settings.compareTokens, full.tokens, () => (st = s.kvStats()));
    st ??= s.kvStats();
    return {
      bytesInUse: st.bytesInUse,
      bytesFullEquivalent: st.bytesFullEquivalent,
      agreement: round(g.agree / Math.max(1, full.tokens.length)),
      ...poolOf(st, resident()),
    };
  });
  const results: MemoryResult[] = [];
  for (const tau of taus) {
    const kv: KvOptions = { policy: "kvzap", profile, tau, window: settings.window };
    const result = await withSession(model, settings, kv, prompt, async (s, resident) => {
      await s.setPrompt(prompt);
      // Pairs are dropped as they leave the window when the next batch is planned: the memory a prompt leaves behind
      // shows once the first token after it has been evaluated.
      let st: KvStats | undefined;
      const g = await greedy(s, prompt, settings.compareTokens, full.tokens, () => (st = s.kvStats()));
      st ??= s.kvStats();
      const layers = (st.layers ?? []).map((l) => ({
        bytesInUse: l.bytesInUse,
        bytesFullEquivalent: l.bytesFullEquivalent,
        compression: l.bytesInUse > 0 ? round(l.bytesFullEquivalent / l.bytesInUse) : 0,
        entries: l.entries,
      }));
      const heads = layers.reduce((a, l) => a + l.entries.length, 0);
      const held = layers.reduce((a, l) => a + l.entries.reduce((x, y) => x + y, 0), 0);
      const tokens = st.tokens ?? prompt.length;
      return {
        tau,
        window: st.window ?? settings.window ?? profile.manifest.window,
        tokens,
        bytesInUse: st.bytesInUse,
        bytesFullEquivalent: st.bytesFullEquivalent,
        compression: st.bytesInUse > 0 ? round(st.bytesFullEquivalent / st.bytesInUse) : 0,
        keptFraction: heads > 0 && tokens > 0 ? round(held / (heads * tokens)) : 0,
        evicted: st.evicted ?? 0,
        agreement: round(g.agree / Math.max(1, full.tokens.length)),
        firstMismatch: g.firstMismatch,
        layers,
        ...poolOf(st, resident()),
      };
    });
    results.push(result);
    onEvent({ type: "tau", tau, result });
  }
  return { full, window, results };
}

function poolOf(st: KvStats, resident: ResidentMemory | null): PoolMemory {
  return { poolBytes: st.poolBytes, poolReservedBytes: st.poolReservedBytes ?? st.poolBytes, bytesFullAllocation: st.bytesFullAllocation, resident };
}

/**
 * Runs `fn` on a fresh session whose empty-context resident memory has been taken: one batch of the prompt is
 * evaluated first and cleared (compute buffers are touched once, the KV pool gives its memory back), then the peak
 * starts over. `resident()` reads the peak since then.
 */
async function withSession<T>(
  model: Model,
  settings: MemorySettings,
  kv: KvOptions,
  prompt: readonly number[],
  fn: (s: Session, resident: () => ResidentMemory | null) => Promise<T>,
): Promise<T> {
  const s = await model.createSession({ contextSize: settings.contextSize, batchSize: settings.batchSize, threads: settings.threads, kv });
  try {
    await s.setPrompt(prompt.slice(0, Math.max(1, Math.min(settings.batchSize, prompt.length - 1))));
    s.clear();
    const empty = residentBytes();
    const ok = resetPeakResident();
    return await fn(s, () => {
      const peak = peakResidentBytes();
      return ok && empty !== null && peak !== null ? { empty, peak, kv: peak - empty } : null;
    });
  } finally {
    s.dispose();
  }
}

/**
 * `count` greedy steps after the prompt already in `s`. With `reference`, each step is fed the reference's token (and
 * its own choice is compared with it); without, its own. End-of-generation tokens are ordinary tokens here.
 * `afterFirst` runs once the first token after the prompt has been evaluated (one is, even when count is 1).
 */
async function greedy(
  s: Session,
  prompt: readonly number[],
  count: number,
  reference: readonly number[] | null,
  afterFirst?: () => void,
): Promise<{ own: number[]; agree: number; firstMismatch: number }> {
  const own: number[] = [];
  const fed = [...prompt];
  let agree = 0;
  let firstMismatch = -1;
  for (let i = 0; i < count; i++) {
    const t = argmax(s.logits());
    own.push(t);
    if (reference) {
      if (t === reference[i]) agree++;
      else if (firstMismatch < 0) firstMismatch = i;
    }
    if ((i + 1 === count && !(i === 0 && afterFirst)) || fed.length + 1 >= s.contextSize) break;
    fed.push(reference ? reference[i] : t);
    await s.setPrompt(fed);
    if (i === 0) afterFirst?.();
  }
  return { own, agree, firstMismatch: firstMismatch < 0 ? own.length : firstMismatch };
}

function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}
