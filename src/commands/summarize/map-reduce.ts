// One document: whole when it fits, else map (one summary per chunk) then reduce (combine, recursively while the
// partial summaries do not fit one call). Every call's answer goes through the part cache, so a rerun after a stop
// skips the calls already made.
import { UserError } from "../../base/errors.js";
import { splitText } from "../../documents/index.js";
import type { Model } from "../../engine/model.js";
import type { Session } from "../../engine/session.js";
import type { PartCache } from "./part-cache.js";
import { documentBudget, renderTemplate, type PromptBuilder } from "./prompt.js";

export interface Engine {
  model: Model;
  session: Session;
}

/** Thrown inside a document's summarization when the signal fires; never reported as an input's error. */
export class Interrupted extends Error {}

/** Combining must fit at least two partial summaries per call, or it could not shrink their list. */
export const MIN_PARTS_PER_CALL = 2;
/** Room for the label in front of each partial summary when partial summaries are combined. */
export const LABEL_TOKENS = 32;

export interface SummarizeTextOptions {
  template: string;
  name: string;
  maxTokens: number;
  temperature: number;
  seed?: number;
  signal?: AbortSignal;
  /** Updated as calls finish, so that a failure still reports what was spent. */
  counts: { tokensIn: number; tokensOut: number; chunks: number };
  /** Before each call. */
  onStep?: (label: string, done: number, total: number) => void;
  /** Once a long input is split: its part count, the calls planned, and how many answers the cache already has. */
  onSplit?: (parts: number, calls: number, cached: number) => void;
  /** After each call of a split input, with the seconds it took (0 when it came from the cache). */
  onCalled?: (label: string, done: number, total: number, seconds: number, cached: boolean) => void;
  cache?: PartCache;
}

interface Part {
  /** 1-based range of the chunks this summary covers. */
  from: number;
  to: number;
  text: string;
}

export async function summarizeText(engine: Engine, prompts: PromptBuilder, text: string, o: SummarizeTextOptions): Promise<string> {
  const { session } = engine;
  const ctx = session.contextSize;
  let calls = 0;
  let plannedCalls = 1;
  let split = false;
  const call = async (document: string, name: string, label: string): Promise<string> => {
    o.onStep?.(label, calls, plannedCalls);
    const prompt = renderTemplate(o.template, { document, name });
    const key = o.cache?.keyFor(prompt);
    const kept = key === undefined ? undefined : o.cache?.get(key);
    if (kept !== undefined) {
      calls++;
      if (split) o.onCalled?.(label, calls, plannedCalls, 0, true);
      return kept;
    }
    const t0 = performance.now();
    const r = await session.generate(prompts.build(prompt), {
      maxTokens: o.maxTokens,
      temperature: o.temperature,
      seed: o.seed,
      signal: o.signal,
    });
    o.counts.tokensIn += r.stats.promptTokens;
    o.counts.tokensOut += r.stats.generatedTokens;
    if (r.stopReason === "abort" || o.signal?.aborted) throw new Interrupted();
    calls++;
    const answer = r.text.trim();
    // A whole-document answer is the summary itself; only the pieces of a split input are worth keeping.
    if (split && key !== undefined) await o.cache?.put(key, answer);
    if (split) o.onCalled?.(label, calls, plannedCalls, (performance.now() - t0) / 1000, false);
    return answer;
  };

  const whole = documentBudget(ctx, o.maxTokens, prompts, o.template, o.name);
  if (prompts.count(text) <= whole) {
    o.counts.chunks = 1;
    return await call(text, o.name, "summarizing");
  }

  const chunkBudget = documentBudget(ctx, o.maxTokens, prompts, o.template, `${o.name} (parts 9999-9999 of 9999)`);
  if (chunkBudget < MIN_PARTS_PER_CALL * (o.maxTokens + LABEL_TOKENS)) {
    throw new UserError(`the prompt template and the file name leave too little of the ${ctx}-token context for the text; raise --ctx`);
  }
  const chunks = splitText(text, chunkBudget, (s) => prompts.count(s));
  const n = chunks.length;
  o.counts.chunks = n;
  split = true;
  // At least one combining call; more when the part summaries do not fit one.
  plannedCalls = n + Math.max(1, Math.ceil((n * (o.maxTokens + LABEL_TOKENS)) / Math.max(1, whole)));
  o.onSplit?.(n, plannedCalls, o.cache?.size ?? 0);
  let parts: Part[] = [];
  for (let i = 0; i < n; i++) {
    const summary = await call(chunks[i], `${o.name} (part ${i + 1} of ${n})`, `part ${i + 1} of ${n}`);
    parts.push({ from: i + 1, to: i + 1, text: summary });
  }

  const label = (p: Part) => (p.from === p.to ? `part ${p.from} of ${n}` : `parts ${p.from}-${p.to} of ${n}`);
  const render = (ps: readonly Part[]) => ps.map((p) => `Summary of ${label(p)}:\n${p.text}`).join("\n\n");
  const groupBudget = chunkBudget;
  for (;;) {
    parts = parts.filter((p) => p.text.length > 0);
    if (parts.length === 0) return "";
    if (parts.length === 1) return parts[0].text;
    if (prompts.count(render(parts)) <= whole) {
      plannedCalls = calls + 1;
      return await call(render(parts), o.name, "combining");
    }
    // Too many partial summaries for one call: combine neighbours in groups that fit, at least two per group so
    // that every round shrinks the list, and go again.
    const groups: Part[][] = [];
    for (const p of parts) {
      const current = groups[groups.length - 1];
      if (current && (current.length < 2 || prompts.count(render([...current, p])) <= groupBudget)) current.push(p);
      else groups.push([p]);
    }
    plannedCalls = calls + groups.filter((g) => g.length > 1).length + 1;
    const next: Part[] = [];
    for (const g of groups) {
      if (g.length === 1) {
        next.push(g[0]);
        continue;
      }
      const range: Part = { from: g[0].from, to: g[g.length - 1].to, text: "" };
      range.text = await call(render(g), `${o.name} (${label(range)})`, `combining ${label(range)}`);
      next.push(range);
    }
    parts = next;
  }
}
