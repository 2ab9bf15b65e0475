// Task accuracy: each task's prompt through every setting of the plan, greedy answers scored as RULER scores them.
import type { Model } from "../engine/model.js";
import type { Session } from "../engine/session.js";
import { pairCompression } from "./policies.js";
import { promptTokens, type TemplateMode } from "./prompt.js";
import { recordRow, reuseRow, rowKey, sha256, type TaskRow } from "./rows.js";
import { walkPlan, type PlanOptions, type PrefillMode } from "./runs.js";
import { scoreOutput } from "./score.js";
import type { PolicySetting } from "./setting.js";
import type { EvalTask } from "./tasks.js";

export interface TaskRunOptions extends PlanOptions {
  modes: readonly PrefillMode[];
  /** The product's prompt batch (and ubatch). */
  batch: number;
  template: TemplateMode;
  rowsFile: string;
  done: Map<string, TaskRow>;
  identity: string;
  /** Keys of the rows this run made or found made. */
  used: Set<string>;
  onRow?: (row: TaskRow) => void;
  signal?: AbortSignal;
}

export function taskPromptSha(model: Model, task: EvalTask, template: TemplateMode): { tokens: number[]; sha: string } {
  const tokens = promptTokens(model, task, template);
  return { tokens, sha: sha256(JSON.stringify(tokens)) };
}

export async function runTask(model: Model, task: EvalTask, o: TaskRunOptions): Promise<void> {
  const { tokens, sha } = taskPromptSha(model, task, o.template);
  for (const mode of o.modes) {
    if (o.signal?.aborted) return;
    const keyOf = (k: string) =>
      rowKey({
        id: o.identity,
        sha,
        mode,
        k,
        window: o.window,
        batch: mode === "paper" ? 0 : o.batch,
        max: task.maxNewTokens,
        seed: o.seed,
        tauFrom: o.tauFrom,
      });
    await walkPlan(
      model,
      o,
      { prompt: tokens.length, all: tokens },
      async (setting, k) => {
        if (o.signal?.aborted) return null;
        const row = await runOne(model, task, tokens, setting, mode, o, keyOf(k), sha);
        if (!row) return null;
        return recordRow(o, row);
      },
      (k) => {
        if (o.signal?.aborted) return null;
        return reuseRow(o, keyOf(k));
      },
    );
  }
}

async function runOne(
  model: Model,
  task: EvalTask,
  tokens: number[],
  setting: PolicySetting,
  mode: PrefillMode,
  o: TaskRunOptions,
  key: string,
  promptSha256: string,
): Promise<TaskRow | null> {
  const started = performance.now();
  // product: the session's own ubatch for the policy (smaller for evicting sessions); paper: one pass
  const batch = mode === "paper" ? tokens.length : Math.min(o.batch, tokens.length);
  const session: Session = await model.createSession({
    contextSize: tokens.length + task.maxNewTokens + 2,
    batchSize: batch,
    ubatchSize: mode === "paper" ? batch : undefined,
    threads: o.threads,
    kv: setting.kv,
  });
  try {
    const pre = await session.setPrompt(tokens, { signal: o.signal });
    if (pre.aborted) return null;
    const stats = session.kvStats();
    const c = setting.policy === "full" ? { pairsPerHead: tokens.length, compression: 1, bytesCompression: 1 } : pairCompression(stats);
    const r = await session.generate(tokens, { maxTokens: task.maxNewTokens, temperature: 0, signal: o.signal });
    if (r.stopReason === "abort") return null;
    return {
      kind: "task",
      key,
      promptSha256,
      id: task.id,
      task: task.task,
      length: task.length,
      mode,
      policy: setting.policy,
      target: setting.target,
      param: setting.param,
      tokens: tokens.length,
      compression: c.compression,
      bytesCompression: c.bytesCompression,
      pairsPerHead: c.pairsPerHead,
      prefillTokensPerSecond: pre.ms > 0 ? (pre.evaluated * 1000) / pre.ms : 0,
      decodeTokensPerSecond: r.stats.decodeTokensPerSecond,
      score: scoreOutput(r.text, task.answers, task.metric),
      output: r.text,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    session.dispose();
  }
}
