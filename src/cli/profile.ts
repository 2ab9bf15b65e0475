import path from "node:path";
import { checkProfile, DEFAULT_IMPORT_TAU, DEFAULT_WINDOW, importProfile, listAllProfiles, showProfile } from "../commands/profile.js";
import { intFlag, numberFlag } from "./args.js";
import { defineCommand } from "./command.js";
import { UsageError } from "../base/errors.js";
import { formatBytes, formatCount, formatPairs } from "../base/format.js";
import { resolveModelArg } from "./model-arg.js";

export const PROFILE = defineCommand({
  name: "profile",
  usage: [
    "import HF_DIR --model GGUF --out PATH [--tau X] [--window N] [--name S] [--force]",
    "show PATH [--json]",
    "list [--json]",
    "validate PATH [--model GGUF]",
  ],
  description: `A profile holds one model's KVzap surrogate (a per-layer linear map or small MLP that predicts each token's KV
importance) and its threshold τ: a folder with profile.json and weights.safetensors. PATH is that folder or its
profile.json.

  import     convert NVIDIA's released KVzap weights (a Hugging Face folder with config.json and
             model.safetensors) into a profile for a GGUF model
  show       model, surrogate, τ, τ table, provenance and weight statistics
  list       the profiles shipped with kvzap and those in <cacheDir>/profiles
  validate   check a profile's files, and with --model that it was made for that model; prints "ok: …"`,
  groups: [
    {
      options: {
        model: { value: "GGUF", help: "import: the model the weights were trained for (required); validate: check the profile against it" },
        json: { type: "boolean", help: "print JSON (show, list)" },
      },
    },
    {
      title: "import:",
      options: {
        out: { value: "PATH", help: "the profile folder to create (required)" },
        tau: {
          value: "X",
          help: "default threshold",
          default: `${DEFAULT_IMPORT_TAU.linear} for linear, ${DEFAULT_IMPORT_TAU.mlp} for MLP: the paper's operating points`,
          check: (v: string) => void numberFlag(v, "tau"),
        },
        window: { value: "N", help: "recent tokens never evicted", default: String(DEFAULT_WINDOW), check: (v: string) => void intFlag(v, "window", 0) },
        name: { value: "S", help: "the profile's name", default: "the folder name of HF_DIR" },
        force: { type: "boolean", help: "replace an existing profile at --out" },
      },
    },
  ],
});

const SUBCOMMANDS = ["import", "show", "list", "validate"] as const;
type Subcommand = (typeof SUBCOMMANDS)[number];

const FLAGS_OF: Record<Subcommand, string[]> = {
  import: ["model", "out", "tau", "window", "name", "force"],
  show: ["json"],
  list: ["json"],
  validate: ["model"],
};

function out(text: string): void {
  process.stdout.write(text + "\n");
}

function expectPositionals(sub: string, args: string[], names: string[]): void {
  if (args.length === names.length) return;
  if (args.length < names.length) throw new UsageError(`${sub} needs ${names.join(" ")}`);
  throw new UsageError(`${sub} takes ${names.length === 0 ? "no arguments" : names.join(" ")}, got ${args.map((a) => `'${a}'`).join(" ")}`);
}

function table(rows: string[][], rightAligned: number[] = []): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => (rightAligned.includes(c) ? cell.padStart(widths[c]) : c === r.length - 1 ? cell : cell.padEnd(widths[c])))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

function num(x: number, digits = 3): string {
  return Number.isInteger(x) ? String(x) : x.toPrecision(digits).replace(/\.?0+$/, "");
}

export async function main(argv: string[]): Promise<number> {
  const { values, positionals } = PROFILE.parse(argv);
  if (positionals[0] === "help") values.help = true;
  if (PROFILE.printHelpIf(values)) return 0;
  const [sub, ...args] = positionals;
  if (sub === undefined) throw new UsageError(`a subcommand is required: ${SUBCOMMANDS.join(", ")}`);
  if (!(SUBCOMMANDS as readonly string[]).includes(sub)) throw new UsageError(`unknown subcommand '${sub}'; use one of ${SUBCOMMANDS.join(", ")}`);
  const subcommand = sub as Subcommand;
  for (const [flag, value] of Object.entries(values)) {
    if (value !== undefined && flag !== "help" && !FLAGS_OF[subcommand].includes(flag)) throw new UsageError(`--${flag} does not apply to profile ${sub}`);
  }

  switch (subcommand) {
    case "import":
      return runImport(args, values);
    case "show":
      expectPositionals(sub, args, ["PATH"]);
      return runShow(args[0], values.json === true);
    case "list":
      expectPositionals(sub, args, []);
      return runList(values.json === true);
    case "validate":
      expectPositionals(sub, args, ["PATH"]);
      return runValidate(args[0], values.model);
  }
}

async function runImport(
  args: string[],
  values: { model?: string; out?: string; tau?: string; window?: string; name?: string; force?: boolean },
): Promise<number> {
  expectPositionals("import", args, ["HF_DIR"]);
  const tau = numberFlag(values.tau, "tau");
  const window = intFlag(values.window, "window", 0);
  if (values.model === undefined) throw new UsageError("import needs --model GGUF (the model the KVzap weights were trained for)");
  if (values.out === undefined) throw new UsageError("import needs --out PATH (the profile folder to create)");
  if (values.name !== undefined && values.name.trim() === "") throw new UsageError("--name must not be empty");
  const model = await resolveModelArg(values.model);
  const r = await importProfile({ hfDir: args[0], model, out: values.out, tau, window, name: values.name, force: values.force === true });
  const m = r.profile.manifest;
  out(`imported ${m.surrogate.kind} surrogate (${m.surrogate.layers} layers, ${r.sourceDtype} → F32) for ${path.basename(model)}`);
  out(`profile ${r.profile.dir}: τ ${m.tau}, window ${m.window}`);
  return 0;
}

async function runShow(profilePath: string, json: boolean): Promise<number> {
  const d = await showProfile(profilePath);
  const { manifest: m, manifestPath, dir } = d.profile;
  if (json) {
    out(
      JSON.stringify(
        { dir, manifestPath, manifest: m, parameters: d.parameters, weightsBytes: d.weightsBytes, keepAtTau: d.keepAtTau, layers: d.layers },
        null,
        2,
      ),
    );
    return 0;
  }
  const s = m.surrogate;
  const p = m.provenance;
  const shape = s.kind === "linear" ? `${s.inputDim} → ${s.outputDim}` : `${s.inputDim} → ${s.hiddenDim} → GELU → ${s.outputDim}`;
  const tauNote = d.keepAtTau === null ? "" : ` (keeps ${(d.keepAtTau * 100).toFixed(1)}%, ${(1 / d.keepAtTau).toFixed(2)}x)`;
  const rows: [string, string][] = [
    ["profile", `${m.name} (${manifestPath})`],
    [
      "model",
      `${m.model.architecture}, ${m.model.layers} layers, embedding ${m.model.embeddingSize}, ${m.model.kvHeads} KV heads × ${m.model.headDim}${m.model.file ? `, from ${m.model.file}` : ""}`,
    ],
    ["fingerprint", m.model.fingerprint],
    ["surrogate", `${s.kind}, ${shape} per layer, ${formatCount(d.parameters)} parameters, ${formatBytes(d.weightsBytes)}`],
    ["tau", `${m.tau}${tauNote}`],
    ["window", `${m.window} tokens`],
    ["made by", `${p.tool}, ${p.created}`],
  ];
  if (p.source) rows.push(["source", p.source]);
  if (p.data && p.data.length > 0) rows.push(["data", p.data.map((x) => (typeof x.name === "string" ? x.name : JSON.stringify(x))).join("; ")]);
  if (p.notes) rows.push(["notes", p.notes]);
  out(formatPairs(rows));
  out("");
  if (m.tauTable.length === 0) out("τ table: none (not calibrated on this model)");
  else {
    out("τ table:");
    out(
      table(
        [["τ", "keep", "compression"], ...m.tauTable.map((r) => [num(r.tau), `${(r.keep * 100).toFixed(1)}%`, `${r.compression.toFixed(2)}x`])],
        [0, 1, 2],
      ).replace(/^/gm, "  "),
    );
  }
  out("");
  out("weights per layer:");
  const biasName = s.kind === "linear" ? "bias" : "out bias";
  out(
    table(
      [
        ["layer", "weight rms", "max |w|", `${biasName} mean`, `${biasName} range`],
        ...d.layers.map((l) => [String(l.layer), num(l.weightRms), num(l.weightMaxAbs), num(l.biasMean), `${num(l.biasMin)} … ${num(l.biasMax)}`]),
      ],
      [0, 1, 2, 3],
    ).replace(/^/gm, "  "),
  );
  return 0;
}

async function runList(json: boolean): Promise<number> {
  const { dirs, entries } = await listAllProfiles();
  if (json) {
    out(
      JSON.stringify(
        entries.map((e) => ({
          name: e.manifest?.name ?? null,
          source: e.source,
          dir: e.dir,
          kind: e.manifest?.surrogate.kind ?? null,
          model: e.manifest?.model ?? null,
          tau: e.manifest?.tau ?? null,
          window: e.manifest?.window ?? null,
          ...(e.error ? { error: e.error } : {}),
        })),
        null,
        2,
      ),
    );
    return 0;
  }
  if (entries.length === 0) {
    out(`no profiles (looked in ${dirs.map((d) => d.dir).join(" and ")})`);
    return 0;
  }
  const rows = entries.map((e) =>
    e.manifest
      ? [e.manifest.name, e.manifest.surrogate.kind, modelText(e.manifest.model), num(e.manifest.tau), e.source, e.dir]
      : ["(invalid)", "-", e.error ?? "", "-", e.source, e.dir],
  );
  out(table([["NAME", "KIND", "MODEL", "TAU", "SOURCE", "PATH"], ...rows]));
  return 0;
}

function modelText(m: { architecture: string; layers: number; embeddingSize: number; file: string | null }): string {
  return m.file ?? `${m.architecture} ${m.layers}×${m.embeddingSize}`;
}

async function runValidate(profilePath: string, modelFlag: string | undefined): Promise<number> {
  const model = modelFlag === undefined ? undefined : await resolveModelArg(modelFlag);
  const { profile, model: summary } = await checkProfile(profilePath, model);
  const m = profile.manifest;
  const what = `${m.name} (${m.surrogate.kind}, ${m.surrogate.layers} layers, τ ${m.tau}) at ${profile.manifestPath}`;
  out(summary ? `ok: ${what} fits ${summary.path}` : `ok: ${what}`);
  return 0;
}
