// External tasks: a JSONL file of {id, prompt, answers: [..], maxNewTokens?, task?, metric?} lines, run as the
// generated tasks are (so any benchmark's prompts can be evaluated), and written back in the same form.
import { readFile } from "node:fs/promises";
import { UserError } from "../base/errors.js";
import type { EvalTask } from "./tasks.js";

export const DEFAULT_MAX_NEW_TOKENS = 32;

export function parseTasksJsonl(text: string, file: string): EvalTask[] {
  const tasks: EvalTask[] = [];
  const ids = new Set<string>();
  text.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    const where = `${file}:${i + 1}`;
    let o: unknown;
    try {
      o = JSON.parse(line);
    } catch {
      throw new UserError(`${where}: not a JSON object`);
    }
    if (typeof o !== "object" || o === null || Array.isArray(o)) throw new UserError(`${where}: not a JSON object`);
    const r = o as Record<string, unknown>;
    if (typeof r.id !== "string" || r.id === "") throw new UserError(`${where}: "id" must be a non-empty string`);
    if (ids.has(r.id)) throw new UserError(`${where}: the id '${r.id}' appears twice`);
    if (typeof r.prompt !== "string" || r.prompt === "") throw new UserError(`${where}: "prompt" must be a non-empty string`);
    if (!Array.isArray(r.answers) || r.answers.length === 0 || !r.answers.every((a) => typeof a === "string" && a !== "")) {
      throw new UserError(`${where}: "answers" must be a non-empty list of non-empty strings`);
    }
    const max = r.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
    if (typeof max !== "number" || !Number.isInteger(max) || max < 1 || max > 4096)
      throw new UserError(`${where}: "maxNewTokens" must be a whole number in 1..4096`);
    const metric = r.metric ?? "all";
    if (metric !== "all" && metric !== "part") throw new UserError(`${where}: "metric" must be "all" or "part"`);
    ids.add(r.id);
    tasks.push({
      id: r.id,
      task: typeof r.task === "string" ? r.task : "file",
      length: typeof r.length === "number" ? r.length : 0,
      prompt: r.prompt,
      answerPrefix: typeof r.answerPrefix === "string" ? r.answerPrefix : "",
      answers: r.answers as string[],
      metric,
      maxNewTokens: max,
    });
  });
  if (tasks.length === 0) throw new UserError(`${file} holds no tasks`);
  return tasks;
}

export async function readTasksFile(file: string): Promise<EvalTask[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new UserError(`cannot read the tasks file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  return parseTasksJsonl(text, file);
}

export function tasksToJsonl(tasks: readonly EvalTask[]): string {
  return tasks.map((t) => JSON.stringify(t)).join("\n") + "\n";
}
