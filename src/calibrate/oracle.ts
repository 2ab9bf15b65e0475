// The KVzip+ oracle pass: each prompt's context, then "Repeat the previous context exactly." and the context again;
// the importance of a context pair is how much the repetition's queries draw from it. Per prompt a seeded sample of
// context tokens becomes training pairs: x = the layer's attn_norm row, y = log s⁺ per KV head.
import type { ChatMessage } from "../engine/model.js";
import type { OracleDevice } from "../engine/compute.js";
import type { Session } from "../engine/session.js";
import type { OracleCache, PromptPairs } from "./cache.js";
import type { CalibrationPrompt, Tokenizer } from "./data.js";
import { rng, sampleIndices, subSeed } from "./rng.js";

export const REPEAT_INSTRUCTION = "Repeat the previous context exactly.";
/** KVzip scores long contexts in chunks: each chunk's keys against its own repetition. */
export const REPEAT_CHUNK = 2048;
/** Context tokens sampled per prompt (all when fewer). */
export const SAMPLES_PER_PROMPT = 500;
/** log s⁺ of a pair no query attends to at all. */
export const MIN_SCORE = 1e-30;

export interface ChatModel extends Tokenizer {
  readonly info: { bos: number; addBos: boolean };
  readonly hasChatTemplate: boolean;
  formatChat(messages: ChatMessage[], addAssistantTurn?: boolean): { text: string; templated: boolean };
}

/** How a prompt becomes the oracle's sequence: prefix + context + middle + context (or one chunk of it). */
export interface RepeatLayout {
  templated: boolean;
  /** Tokens before the context text: BOS, and the chat template's opening up to the user's text. */
  prefix: number[];
  /** Tokens between the context and its repetition: the instruction (and the template's turn change). */
  middle: number[];
}

const MARK_CONTEXT = "\u0001KVZAP_CONTEXT\u0001";
const MARK_REPEAT = "\u0001KVZAP_REPEAT\u0001";

/**
 * The repeat prompt in the model's own chat template when it has one (user: the context and the instruction;
 * assistant: the context again), else plain text. The context's tokens are spliced in between tokenized template
 * parts, so that the repetition holds exactly the context's token ids.
 */
export function repeatLayout(model: ChatModel): RepeatLayout {
  const bos = model.info.addBos ? [model.info.bos] : [];
  if (model.hasChatTemplate) {
    const { text, templated } = model.formatChat(
      [
        { role: "user", content: `${MARK_CONTEXT}\n\n${REPEAT_INSTRUCTION}` },
        { role: "assistant", content: MARK_REPEAT },
      ],
      false,
    );
    const a = text.indexOf(MARK_CONTEXT);
    const b = text.indexOf(MARK_REPEAT);
    if (templated && a >= 0 && b > a) {
      const special = { addSpecial: false, parseSpecial: true };
      let prefix = model.tokenize(text.slice(0, a), special);
      if (bos.length > 0 && prefix[0] !== bos[0]) prefix = [...bos, ...prefix];
      const middle = model.tokenize(text.slice(a + MARK_CONTEXT.length, b), special);
      return { templated: true, prefix, middle };
    }
  }
  return { templated: false, prefix: bos, middle: model.tokenize(`\n\n${REPEAT_INSTRUCTION}\n\n`, { addSpecial: false }) };
}

/** Positions a prompt needs in the oracle session: the context, the middle and the longest repeated chunk. */
export function oracleLength(layout: RepeatLayout, textTokens: number): number {
  return layout.prefix.length + textTokens + layout.middle.length + Math.min(textTokens, REPEAT_CHUNK);
}

export interface OracleGeometry {
  layers: number;
  embeddingSize: number;
  kvHeads: number;
}

/** The context positions sampled for a prompt: seeded by the prompt's text, so that a resumed run samples the same. */
export function samplePositions(contextLength: number, seed: number, promptId: string, samples = SAMPLES_PER_PROMPT): number[] {
  return sampleIndices(contextLength, samples, rng(subSeed(seed, "sample", promptId)));
}

/**
 * Runs the oracle on one prompt in an oracle session (kv.oracle) and returns its training pairs per layer.
 * Context positions [0, n) are the prefix and the text; chunk k of the text is scored against its own repetition.
 */
export async function oraclePairs(
  session: Session,
  layout: RepeatLayout,
  prompt: CalibrationPrompt,
  geo: OracleGeometry,
  seed: number,
  options: { signal?: AbortSignal; chunk?: number; samples?: number; device?: OracleDevice } = {},
): Promise<PromptPairs | null> {
  const { signal, device = "auto" } = options;
  const chunk = options.chunk ?? REPEAT_CHUNK;
  const P = layout.prefix.length;
  const T = prompt.tokens;
  const context = [...layout.prefix, ...T];
  const n = context.length;
  const R = n + layout.middle.length;
  const positions = samplePositions(n, seed, prompt.id, options.samples);
  const { layers: L, embeddingSize: D, kvHeads: H } = geo;
  const x = Array.from({ length: L }, () => new Float32Array(positions.length * D));
  const y = Array.from({ length: L }, () => new Float32Array(positions.length * H));
  session.clear();
  let next = 0; // the first sampled position not yet scored
  for (let a = 0; a < T.length; a += chunk) {
    const b = Math.min(T.length, a + chunk);
    const repeated = T.slice(a, b);
    const r = await session.setPrompt([...context, ...layout.middle, ...repeated], { signal });
    if (r.aborted) return null;
    if (a === 0) {
      // attn_norm rows of the context are the same for every chunk
      for (let l = 0; l < L; l++) {
        const rows = session.kvHidden(l, 0, n);
        positions.forEach((p, s) => x[l].set(rows.subarray(p * D, (p + 1) * D), s * D));
      }
    }
    const c0 = a === 0 ? 0 : P + a;
    const c1 = P + b;
    const { scores } = await session.oracleScores([c0, c1], [R, R + repeated.length], device);
    const span = c1 - c0;
    for (; next < positions.length && positions[next] < c1; next++) {
      const i = positions[next] - c0;
      for (let l = 0; l < L; l++) {
        for (let h = 0; h < H; h++) {
          y[l][next * H + h] = Math.log(Math.max(MIN_SCORE, scores[(l * span + i) * H + h]));
        }
      }
    }
  }
  return { n: positions.length, x, y };
}

export interface OracleProgress {
  done: number;
  total: number;
  cached: number;
}

export interface OracleSummary {
  prompts: number;
  /** Prompts whose pairs came from the cache of an earlier run. */
  cached: number;
  /** Prompts the oracle ran on in this run. */
  computed: number;
  pairs: number;
  seconds: number;
  interrupted: boolean;
}

/**
 * The oracle over all prompts, skipping those already in the cache; each prompt's pairs are cached as soon as they
 * are computed, so that an interrupted calibration resumes where it stopped. `openSession` is called only if some
 * prompt needs the oracle.
 */
export async function runOracle(opts: {
  prompts: readonly CalibrationPrompt[];
  cache: OracleCache;
  layout: RepeatLayout;
  geometry: OracleGeometry;
  seed: number;
  openSession: () => Promise<Session>;
  /** Where the oracle computes (default: CUDA when the addon has a device). */
  device?: OracleDevice;
  signal?: AbortSignal;
  onProgress?: (p: OracleProgress) => void;
}): Promise<OracleSummary> {
  const started = performance.now();
  const todo = opts.prompts.filter((p) => !opts.cache.has(p.id));
  const cached = opts.prompts.length - todo.length;
  let session: Session | null = null;
  let computed = 0;
  let interrupted = false;
  opts.onProgress?.({ done: cached, total: opts.prompts.length, cached });
  try {
    for (const prompt of todo) {
      if (opts.signal?.aborted) {
        interrupted = true;
        break;
      }
      session ??= await opts.openSession();
      const pairs = await oraclePairs(session, opts.layout, prompt, opts.geometry, opts.seed, { signal: opts.signal, device: opts.device });
      if (!pairs) {
        interrupted = true;
        break;
      }
      await opts.cache.put(prompt, pairs);
      computed++;
      opts.onProgress?.({ done: cached + computed, total: opts.prompts.length, cached });
    }
  } finally {
    session?.dispose();
  }
  const pairs = opts.prompts.reduce((a, p) => a + (opts.cache.entry(p.id)?.samples ?? 0), 0);
  return { prompts: opts.prompts.length, cached, computed, pairs, seconds: (performance.now() - started) / 1000, interrupted };
}
