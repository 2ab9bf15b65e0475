// `kvzap bench sweep` as functions: the orchestrator runs each configuration in its own process (the stock engine
// is another addon; the driver's memory figures then belong to one configuration), and the worker is what one such
// process does.
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { benchProfile, type BenchProfile } from "../bench/profile.js";
import { promptTokens, readBenchText } from "../bench/prompt.js";
import { benchModelInfo, type BenchModelInfo } from "../bench/report.js";
import { caseName, DeviceSampler, measureCase, promptLength, type SweepCase, type SweepEvent, type SweepRow, type SweepSettings } from "../bench/sweep.js";
import { contextFits, type SweepReport } from "../bench/sweep-report.js";
import { deviceInfo, loadAverage, type DeviceInfo } from "../bench/system.js";
import { systemInfo } from "../engine/compute.js";
import { Model } from "../engine/model.js";

export interface WorkerResult {
  case: SweepCase;
  model: BenchModelInfo;
  device: DeviceInfo;
  engine: "kvzap" | "stock";
  rows: SweepRow[];
}

export interface WorkerOptions {
  modelFile: string;
  case: SweepCase;
  settings: SweepSettings;
  textFile?: string;
  profilePath?: string;
  cacheDir?: string;
  onEvent?: (e: SweepEvent) => void;
}

/** One configuration in this process: the driver's baseline first, then the model, then every depth. */
export async function sweepWorker(o: WorkerOptions): Promise<WorkerResult> {
  const engine = systemInfo().engine;
  const want = o.case.engine === "stock" ? "stock" : "kvzap";
  if (engine !== want) {
    throw new Error(
      `case ${caseName(o.case)} needs the ${want} addon, but this process loaded the ${engine} one (KVZAP_ADDON=${process.env.KVZAP_ADDON ?? ""})`,
    );
  }
  const sampler = new DeviceSampler();
  const device = deviceInfo();
  const text = await readBenchText(o.textFile);
  const phase = (what: string, t0: number) => o.onEvent?.({ type: "phase", what, seconds: (Date.now() - t0) / 1000 });
  let t0 = Date.now();
  const model = await Model.load(o.modelFile);
  phase("model loaded", t0);
  let profile: BenchProfile | null = null;
  try {
    const longest = Math.max(...o.settings.depths);
    t0 = Date.now();
    const tokens = promptTokens(model, text.text, promptLength(longest, o.settings));
    phase(`${tokens.length} prompt tokens made`, t0);
    t0 = Date.now();
    if (o.case.engine === "kvzap") profile = await benchProfile(model.path, { profilePath: o.profilePath, cacheDir: o.cacheDir });
    if (profile) phase("profile ready", t0);
    const rows = await measureCase(model, tokens, o.case, profile?.profile, o.settings, sampler, o.onEvent);
    device.loadAverage.after = loadAverage();
    return { case: o.case, model: benchModelInfo(model), device, engine, rows };
  } finally {
    await profile?.cleanup();
    model.dispose();
  }
}

export interface SweepOptions {
  modelFile: string;
  /** The stock engine's addon (npm run build:stock), or null to leave stock out. */
  stockAddon: string | null;
  cases: SweepCase[];
  settings: SweepSettings;
  textFile?: string;
  profilePath?: string;
  /** The worker's command line for a case, without the --worker-out FILE that is appended. */
  workerArgs: (c: SweepCase) => string[];
  /** The sweep's own command line, for the report. */
  command: string;
  onLine?: (line: string) => void;
  /** After each configuration: the report so far (so that a run cut short keeps what it measured). */
  onPartial?: (o: SweepOutcome) => Promise<void>;
}

export interface SweepOutcome {
  report: SweepReport | null;
  failures: { case: string; message: string }[];
}

export async function runSweep(o: SweepOptions): Promise<SweepOutcome> {
  const created = new Date().toISOString();
  const dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-sweep-"));
  const results: WorkerResult[] = [];
  const failures: { case: string; message: string }[] = [];
  const commands = [o.command];
  try {
    for (const [i, c] of o.cases.entries()) {
      const out = path.join(dir, `case-${i}.json`);
      const args = [...o.workerArgs(c), "--worker-out", out];
      const env = { ...process.env };
      if (c.engine === "stock") env.KVZAP_ADDON = o.stockAddon ?? "";
      commands.push(`${c.engine === "stock" ? `KVZAP_ADDON=${o.stockAddon} ` : ""}${[process.execPath, ...args].map(quote).join(" ")}`);
      o.onLine?.(`[${i + 1}/${o.cases.length}] ${caseName(c)} ${c.kvType}`);
      const t0 = Date.now();
      const code = await new Promise<number>((resolve) => {
        const child = spawn(process.execPath, args, { env, stdio: ["ignore", "inherit", "inherit"] });
        child.on("error", () => resolve(-1));
        child.on("exit", (status) => resolve(status ?? -1));
      });
      // the whole process (model load, prompt, every depth, teardown): what a time-limited run has to plan for
      o.onLine?.(`  ${caseName(c)} ${c.kvType}: its process took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      try {
        if (code !== 0) throw new Error(`its process exited with ${code}`);
        results.push(JSON.parse(await readFile(out, "utf8")) as WorkerResult);
      } catch (e) {
        failures.push({ case: `${caseName(c)} ${c.kvType}`, message: e instanceof Error ? e.message : String(e) });
      }
      await o.onPartial?.(outcome(o, created, commands, results, failures));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return outcome(o, created, commands, results, failures);
}

function outcome(o: SweepOptions, created: string, commands: string[], results: WorkerResult[], failures: { case: string; message: string }[]): SweepOutcome {
  const mine = results.find((r) => r.engine === "kvzap") ?? results[0];
  if (!mine) return { report: null, failures: [...failures] };
  const stock = results.find((r) => r.engine === "stock");
  const rows = results.flatMap((r) => r.rows);
  return {
    report: {
      kind: "kvzap-bench-sweep",
      created,
      model: mine.model,
      device: mine.device,
      stock: stock ? { addon: o.stockAddon ?? "", llamaVersion: stock.device.llamaVersion } : null,
      settings: {
        ...o.settings,
        engines: [...new Set(o.cases.map(caseName))],
        kvTypes: [...new Set(o.cases.map((c) => c.kvType))],
        text: o.textFile ?? "the default benchmark text",
        profile: o.profilePath ?? "the shipped or user profile for the model, else random weights of its shapes (the surrogate's cost is the same)",
        sampling: "greedy",
      },
      commands: [...commands],
      rows,
      fit24GiB: contextFits(rows),
    },
    failures: [...failures],
  };
}

function quote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
}
