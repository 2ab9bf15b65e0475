// The prompt of one summarizing call: the user's template filled in, turned into tokens through the model's chat
// template, and how much document text fits next to it.
import { UserError } from "../../base/errors.js";
import type { Model } from "../../engine/model.js";

export const DEFAULT_TEMPLATE = `Summarize the following document ({{name}}). Keep its main points, names and numbers, and be brief.

{{document}}`;

/** Tokens kept free besides the answer, for tokenizer merges at the joins of template, text and chat markup. */
export const MARGIN_TOKENS = 16;

/** Fills `{{document}}` and `{{name}}` in one pass, so that text inside the document is never substituted. */
export function renderTemplate(template: string, values: { document: string; name: string }): string {
  return template.replace(/\{\{\s*(document|name)\s*\}\}/g, (_, key: "document" | "name") => values[key]);
}

export function checkTemplate(template: string): void {
  const uses = template.match(/\{\{\s*document\s*\}\}/g)?.length ?? 0;
  if (uses === 0) {
    throw new UserError("the prompt template has no {{document}} placeholder, so the document would never reach the model");
  }
  // Each copy takes the whole text again: a template that repeats it would leave every input half the room it
  // seems to have, and the answer a context that is already full.
  if (uses > 1) {
    throw new UserError(`the prompt template has {{document}} ${uses} times; use it once (the text would fill the context ${uses} times over)`);
  }
}

/**
 * Turns user-turn content into prompt tokens through the model's chat template. Markup of the chat template is
 * tokenized with special tokens recognised; the content (the document) never is, so a document that happens to
 * contain `<|im_end|>` cannot end the turn.
 */
export class PromptBuilder {
  private readonly prefix: string;
  private readonly suffix: string;
  private readonly split: boolean;
  /** Tokens of the markup before the content, BOS included. */
  private readonly head: number[];

  constructor(private readonly model: Model) {
    const marker = "\u2063KVZAP-CONTENT\u2063";
    const { text, templated } = model.formatChat([{ role: "user", content: marker }], true);
    const at = text.indexOf(marker);
    const once = at >= 0 && text.indexOf(marker, at + marker.length) < 0;
    this.prefix = once ? text.slice(0, at) : "";
    this.suffix = once ? text.slice(at + marker.length) : "";
    this.split = templated && once;
    const head = model.tokenize(this.prefix, { addSpecial: true, parseSpecial: true });
    // Templates that write the BOS text themselves (`<s>[INST]`) would otherwise start with two BOS tokens.
    const bos = model.tokenize("", { addSpecial: true, parseSpecial: false });
    if (bos.length === 1 && head.length >= 2 && head[0] === bos[0] && head[1] === bos[0]) head.shift();
    this.head = head;
  }

  build(content: string): number[] {
    if (this.split) {
      return [
        ...this.head,
        ...this.model.tokenize(content, { addSpecial: false, parseSpecial: false }),
        ...this.model.tokenize(this.suffix, { addSpecial: false, parseSpecial: true }),
      ];
    }
    // No chat template: the transcript is plain text. (A template that mangles the marker cannot be split, so its
    // output is taken whole, special tokens and all.)
    const { text, templated } = this.model.formatChat([{ role: "user", content }], true);
    return this.model.tokenize(text, { addSpecial: true, parseSpecial: templated });
  }

  count(text: string): number {
    return this.model.tokenize(text, { addSpecial: false, parseSpecial: false }).length;
  }
}

/** Tokens of document text that fit one call next to the template, the chat markup and the answer. */
export function documentBudget(contextSize: number, maxTokens: number, prompts: PromptBuilder, template: string, name: string): number {
  const overhead = prompts.build(renderTemplate(template, { document: "", name })).length;
  return contextSize - maxTokens - overhead - MARGIN_TOKENS;
}
