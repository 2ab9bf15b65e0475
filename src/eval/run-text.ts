// The model-agnostic measure: held-out text, its prompt part prefilled (as the product or as the paper does), then
// the continuation teacher-forced one token at a time, as decoding runs, so that eviction during decoding counts.
// Per position of the continuation: the policy's next-token distribution against the full cache's (KL, top-1
// agreement) and the true next token's likelihood (perplexity).
import { argmax, logSoftmax } from "../calibrate/check.js";
import type { Model } from "../engine/model.js";
import { pairCompression } from "./policies.js";
import { appendRow, recordRow, reuseRow, rowKey, sha256, type TextRow } from "./rows.js";
import { walkPlan, type PlanOptions, type PrefillMode } from "./runs.js";
import { fullSetting, type PolicySetting } from "./setting.js";

export interface TextRunOptions extends PlanOptions {
  modes: readonly PrefillMode[];
  batch: number;
  continuation: number;
  rowsFile: string;
  done: Map<string, TextRow>;
  identity: string;
  /** Keys of the rows this run made or found made. */
  used: Set<string>;
  onRow?: (row: TextRow) => void;
  signal?: AbortSignal;
}

interface Teacher {
  /** Log-probabilities at each continuation step, [step][vocab] (the full cache's, kept for comparison). */
  logp: Float64Array[];
  tokens: number;
}

/** One segment of text: `tokens` (BOS first), the last `continuation` of them teacher-forced. */
export async function runSegment(model: Model, segment: number, tokens: readonly number[], o: TextRunOptions): Promise<void> {
  const sha = sha256(JSON.stringify(tokens));
  const P = tokens.length - o.continuation;
  for (const mode of o.modes) {
    if (o.signal?.aborted) return;
    const keyOf = (k: string) =>
      rowKey({ id: o.identity, sha, mode, k, window: o.window, batch: mode === "paper" ? 0 : o.batch, c: o.continuation, seed: o.seed, tauFrom: o.tauFrom });
    let full: Teacher | null = null;
    const fullRun = async (): Promise<Teacher> => {
      if (full) return full;
      const started = performance.now();
      const r = await forward(model, tokens, P, fullSetting, mode, o);
      full = r.teacher;
      const key = keyOf("full");
      if (o.policies.includes("full") && !o.done.has(key) && r.nll !== undefined) {
        const ppl = Math.exp(r.nll / r.teacher.tokens);
        const row: TextRow = {
          kind: "text",
          key,
          promptSha256: sha,
          segment,
          mode,
          policy: "full",
          target: null,
          param: {},
          tokens: tokens.length,
          continuation: r.teacher.tokens,
          compression: 1,
          bytesCompression: 1,
          pairsPerHead: tokens.length,
          prefillTokensPerSecond: r.prefillTps ?? 0,
          perplexity: ppl,
          perplexityFull: ppl,
          kl: 0,
          top1: 1,
          seconds: (performance.now() - started) / 1000,
        };
        await appendRow(o.rowsFile, row);
        o.done.set(key, row);
        o.used.add(key);
        o.onRow?.(row);
      }
      return full;
    };
    if (o.policies.includes("full")) {
      if (o.done.has(keyOf("full"))) o.used.add(keyOf("full"));
      else await fullRun();
    }
    await walkPlan(
      model,
      { ...o, policies: o.policies.filter((p) => p !== "full") },
      { prompt: P, all: tokens },
      async (setting, k) => {
        if (o.signal?.aborted) return null;
        const ref = await fullRun();
        if (o.signal?.aborted) return null;
        const r = await forward(model, tokens, P, setting, mode, o, ref);
        if (!r.row) return null;
        const row: TextRow = { ...r.row, key: keyOf(k), promptSha256: sha, segment };
        return recordRow(o, row);
      },
      (k) => {
        if (o.signal?.aborted) return null;
        return reuseRow(o, keyOf(k));
      },
    );
  }
}

async function forward(
  model: Model,
  tokens: readonly number[],
  P: number,
  setting: PolicySetting,
  mode: PrefillMode,
  o: TextRunOptions,
  ref?: Teacher,
): Promise<{ teacher: Teacher; row: Omit<TextRow, "key" | "segment" | "promptSha256"> | null; nll?: number; prefillTps?: number }> {
  const started = performance.now();
  const vocab = model.info.vocabSize;
  const batch = mode === "paper" ? P : Math.min(o.batch, P);
  const session = await model.createSession({
    contextSize: tokens.length + 1,
    batchSize: batch,
    ubatchSize: mode === "paper" ? batch : undefined,
    threads: o.threads,
    kv: setting.kv,
  });
  const logp: Float64Array[] = [];
  let nll = 0;
  let nllFull = 0;
  let kl = 0;
  let agree = 0;
  try {
    const pre = await session.setPrompt(tokens.slice(0, P), { signal: o.signal });
    if (pre.aborted) return { teacher: { logp, tokens: 0 }, row: null };
    let logits = session.logits();
    for (let t = P; t < tokens.length; t++) {
      if (o.signal?.aborted) return { teacher: { logp, tokens: 0 }, row: null };
      const lp = new Float64Array(vocab);
      logSoftmax(logits, 0, vocab, lp);
      nll -= lp[tokens[t]];
      if (ref) {
        const lf = ref.logp[t - P];
        nllFull -= lf[tokens[t]];
        let d = 0;
        for (let i = 0; i < vocab; i++) {
          const p = Math.exp(lf[i]);
          if (p > 0) d += p * (lf[i] - lp[i]);
        }
        kl += Math.max(0, d);
        if (argmax(lf) === argmax(lp)) agree++;
      } else {
        logp.push(lp);
      }
      if (t + 1 < tokens.length) logits = await session.evaluateAll([tokens[t]]);
    }
    const n = tokens.length - P;
    if (!ref) return { teacher: { logp, tokens: n }, row: null, nll, prefillTps: pre.ms > 0 ? (pre.evaluated * 1000) / pre.ms : 0 };
    const c = pairCompression(session.kvStats());
    return {
      teacher: { logp, tokens: n },
      row: {
        kind: "text",
        mode,
        policy: setting.policy,
        target: setting.target,
        param: setting.param,
        tokens: tokens.length,
        continuation: n,
        compression: c.compression,
        bytesCompression: c.bytesCompression,
        pairsPerHead: c.pairsPerHead,
        prefillTokensPerSecond: pre.ms > 0 ? (pre.evaluated * 1000) / pre.ms : 0,
        perplexity: Math.exp(nll / n),
        perplexityFull: Math.exp(nllFull / n),
        kl: kl / n,
        top1: agree / n,
        seconds: (performance.now() - started) / 1000,
      },
    };
  } finally {
    session.dispose();
  }
}
