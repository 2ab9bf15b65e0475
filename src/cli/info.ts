import { readModelSummary } from "../engine/gguf.js";
import { intFlag, parseCommandArgs } from "./args.js";
import { UsageError } from "../base/errors.js";
import { formatBytes, formatCount, formatPairs } from "../base/format.js";
import { resolveModelArg } from "./model-arg.js";

const HELP = `usage: kvzap info MODEL [--ctx N] [--json]

Shows a GGUF model's architecture and what its KV cache costs, without loading the weights.

  MODEL       a GGUF path, hf:user/repo:quant, or an http(s) URL
  --ctx N     also show the KV cache size at a context of N tokens
  --json      print JSON`;

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    ctx: { type: "string" },
    json: { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    process.stdout.write(HELP + "\n");
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? "a MODEL is required" : `one MODEL expected, got ${positionals.length}`);
  const ctx = intFlag(values.ctx, "ctx", 1);
  const file = await resolveModelArg(positionals[0]);
  const s = await readModelSummary(file);
  const atContext = ctx === undefined ? null : { contextSize: ctx, f16: s.kvBytesPerToken.f16 * ctx, q8_0: s.kvBytesPerToken.q8_0 * ctx };
  if (values.json) {
    process.stdout.write(JSON.stringify({ ...s, kvBytesAtContext: atContext }, null, 2) + "\n");
    return 0;
  }
  const noAttention = s.attentionLayers === 0;
  const rows: [string, string][] = [
    ["model", s.name ? `${s.name} (${s.path})` : s.path],
    ["architecture", s.architecture],
    ["layers", String(s.layers)],
  ];
  if (noAttention) {
    rows.push(["attention", "none: no layer has attention, so there is no KV cache (KVzap cannot run it; --kv full can)"]);
  } else {
    if (s.attentionLayers < s.layers) rows.push(["attention layers", `${s.attentionLayers} of ${s.layers}: a hybrid (KVzap cannot run it; --kv full can)`]);
    rows.push(
      ["heads", `${s.heads} query, ${s.kvHeads} KV (GQA ${s.kvHeads > 0 ? s.heads / s.kvHeads : "?"}:1)`],
      ["head dim", s.headDimV === s.headDim ? String(s.headDim) : `${s.headDim} (K), ${s.headDimV} (V)`],
    );
  }
  rows.push(
    ["embedding", String(s.embeddingSize)],
    ["context length", String(s.contextLength)],
    ["weights", `${s.weightType}, ${formatCount(s.parameters)} parameters, ${formatBytes(s.sizeBytes)}`],
    ["chat template", s.chatTemplate ? "yes" : "no"],
  );
  if (!noAttention) {
    rows.push(["KV per token", `${formatBytes(s.kvBytesPerToken.f16)} (f16), ${formatBytes(s.kvBytesPerToken.q8_0)} (q8_0)`]);
    if (atContext) rows.push([`KV at ${ctx} tokens`, `${formatBytes(atContext.f16)} (f16), ${formatBytes(atContext.q8_0)} (q8_0)`]);
  }
  process.stdout.write(formatPairs(rows) + "\n");
  return 0;
}
