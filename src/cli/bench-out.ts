// Where a benchmark writes its JSON when --out is not given.
import path from "node:path";

/** bench-<kind>-<model file without .gguf>-<local date and time>.json in the current folder. */
export function defaultOut(kind: "speed" | "memory" | "sweep", modelPath: string, now = new Date()): string {
  const name = path
    .basename(modelPath)
    .replace(/\.gguf$/i, "")
    .replace(/[^A-Za-z0-9._-]+/g, "_");
  const p = (n: number) => String(n).padStart(2, "0");
  const date = `${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}-${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}`;
  return `bench-${kind}-${name}-${date}.json`;
}
