// The addon's work that needs no model: what the build and machine offer, and the numeric kernels calibration fits
// surrogates with. Callers outside the engine use these, never the addon itself.
import { loadAddon, type NativeAddon } from "./addon.js";

export type { MlpTrainingSettings, OracleDevice } from "./addon.js";

export type SystemInfo = ReturnType<NativeAddon["systemInfo"]>;

/** The backend (cpu or cuda), its devices, the llama.cpp version and CPU features of this build. */
export function systemInfo(): SystemInfo {
  return loadAddon().systemInfo();
}

export interface GpuMemory {
  name: string;
  /** total − free as the driver reports it (cudaMemGetInfo through ggml): the whole device, every process. */
  usedBytes: number;
  totalBytes: number;
}

/** The driver's figures for the index-th GPU of this build now, or undefined without one (CPU builds). */
export function gpuMemory(index = 0): GpuMemory | undefined {
  const d = loadAddon().gpuDevice(index);
  return d && d.totalBytes > 0 ? { name: d.name, usedBytes: d.totalBytes - d.freeBytes, totalBytes: d.totalBytes } : undefined;
}

/** Ridge regression y ≈ W x + b for all outputs at once (float64 normal equations), on CPU threads. */
export function ridgeFit(...args: Parameters<NativeAddon["ridgeFit"]>): ReturnType<NativeAddon["ridgeFit"]> {
  return loadAddon().ridgeFit(...args);
}

/** AdamW training of a D → hidden → H MLP on the mean squared error, on CPU threads or CUDA. */
export function trainMlp(...args: Parameters<NativeAddon["trainMlp"]>): ReturnType<NativeAddon["trainMlp"]> {
  return loadAddon().trainMlp(...args);
}
