// What a benchmark ran on, written with its numbers: a rate means little without the machine and its load.
import os from "node:os";
import { systemInfo } from "../engine/compute.js";

export interface DeviceInfo {
  backend: "cpu" | "cuda";
  devices: { name: string; description: string; type: "cpu" | "gpu"; totalBytes: number }[];
  llamaVersion: string;
  /** llama.cpp's CPU feature line (AVX2, AVX512, …). */
  system: string;
  cpuModel: string;
  /** Logical CPUs this process may use. */
  cpuThreads: number;
  /** 1, 5 and 15-minute load averages when the benchmark started and when it ended. */
  loadAverage: { before: number[]; after: number[] | null };
}

export function deviceInfo(): DeviceInfo {
  const s = systemInfo();
  return {
    backend: s.backend,
    devices: s.devices.map((d) => ({ name: d.name, description: d.description, type: d.type, totalBytes: d.totalBytes })),
    llamaVersion: s.llamaVersion,
    system: s.system.trim(),
    cpuModel: os.cpus()[0]?.model.trim() ?? "unknown",
    cpuThreads: os.availableParallelism(),
    loadAverage: { before: loadAverage(), after: null },
  };
}

export function loadAverage(): number[] {
  return os.loadavg().map((x) => Math.round(x * 100) / 100);
}
