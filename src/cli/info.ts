import { readModelSummary } from "../engine/gguf.js";
import { requireModel } from "../settings/resolve.js";
import { intFlag } from "./args.js";
import { atMostPositionals, defineCommand } from "./command.js";
import { MODEL_OPTION, RUNTIME_OPTIONS } from "./options.js";
import { UsageError } from "../base/errors.js";
import { formatBytes, formatCount, formatPairs } from "../base/format.js";
import { resolveModelArg } from "./model-arg.js";

export const INFO = defineCommand({
  name: "info",
  usage: ["[MODEL] [--ctx N] [--json]"],
  description: "Shows a GGUF model's architecture and what its KV cache costs, without loading the weights.",
  arguments: [["MODEL", "a GGUF path, hf:user/repo:quant or an http(s) URL (or --model; default: the configured model)"]],
  groups: [
    {
      options: {
        ...MODEL_OPTION,
        ctx: { value: "N", help: "also show the KV cache size at a context of N tokens", check: (v: string) => void intFlag(v, "ctx", 1) },
        "cache-dir": RUNTIME_OPTIONS["cache-dir"],
        json: { type: "boolean", help: "print JSON" },
      },
    },
  ],
});

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = INFO.parse(argv);
  if (INFO.printHelpIf(values)) return 0;
  atMostPositionals(positionals, 1, "MODEL");
  if (positionals.length === 1 && values.model !== undefined) throw new UsageError("give the model once: as MODEL or as --model");
  const spec = requireModel(positionals[0] ?? values.model);
  const ctx = intFlag(values.ctx, "ctx", 1);
  const file = await resolveModelArg(spec, values["cache-dir"]);
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
