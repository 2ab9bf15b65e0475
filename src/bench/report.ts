// What a benchmark run reports (JSON and tables): the measurements with the model, machine and settings they came from.
import path from "node:path";
import type { Model } from "../engine/model.js";
import type { MemoryMeasurement, MemorySettings } from "./memory.js";
import type { ProfileInfo } from "./profile.js";
import type { SpeedMeasurement, SpeedSettings } from "./speed.js";
import type { DeviceInfo } from "./system.js";

export interface BenchModelInfo {
  path: string;
  description: string;
  parameters: number;
  layers: number;
  heads: number;
  kvHeads: number;
  embeddingSize: number;
  trainedContext: number;
}

export interface SpeedReport extends SpeedMeasurement {
  kind: "kvzap-bench-speed";
  created: string;
  model: BenchModelInfo;
  device: DeviceInfo;
  settings: SpeedSettings & { variants: string[]; profile: ProfileInfo | null; text: string; order: string; sampling: string };
}

export interface MemoryReport extends MemoryMeasurement {
  kind: "kvzap-bench-memory";
  created: string;
  model: BenchModelInfo;
  device: DeviceInfo;
  settings: MemorySettings & { taus: number[]; profile: ProfileInfo; text: string };
}

export function benchModelInfo(model: Model): BenchModelInfo {
  const i = model.info;
  return {
    path: path.resolve(model.path),
    description: i.description,
    parameters: i.parameters,
    layers: i.layers,
    heads: i.heads,
    kvHeads: i.kvHeads,
    embeddingSize: i.embeddingSize,
    trainedContext: i.contextLength,
  };
}
