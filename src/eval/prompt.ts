// A task as the model reads it: through its chat template (user: the task; assistant: the answer prefix) or, for base
// models, as plain completion (the task, then the answer prefix).
import type { Model } from "../engine/model.js";
import type { EvalTask } from "./tasks.js";

export type TemplateMode = "auto" | "chat" | "plain";

export function promptText(model: Model, task: EvalTask, mode: TemplateMode): { text: string; templated: boolean } {
  // a prefix that opens a line of its own (key/value needles) follows the prompt as it is
  const prefix = !task.answerPrefix ? "" : task.answerPrefix.startsWith("\n") ? task.answerPrefix : ` ${task.answerPrefix}`;
  if (mode !== "plain" && model.hasChatTemplate) {
    const { text, templated } = model.formatChat([{ role: "user", content: task.prompt }], true);
    if (templated) return { text: text + prefix.trimStart(), templated: true };
  }
  return { text: task.prompt + prefix, templated: false };
}

export function promptTokens(model: Model, task: EvalTask, mode: TemplateMode): number[] {
  const { text, templated } = promptText(model, task, mode);
  return model.tokenize(text, { addSpecial: true, parseSpecial: templated });
}
