// Runs clang-format (the binary the clang-format npm package ships) over our C++ and CUDA sources:
//   node scripts/clang-format.mjs          rewrite them in place (npm run format)
//   node scripts/clang-format.mjs --check  list the files that differ and exit 1 (npm run format:check)
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const DIRS = ["native/src", "native/kvzap", "native/tests", "cuda"];
const EXT = /\.(c|cc|cpp|h|hpp|cu|cuh)$/;

const files = DIRS.flatMap((d) =>
  readdirSync(path.join(root, d), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && EXT.test(e.name))
    .map((e) => path.join(e.parentPath, e.name)),
).sort();

// The package's index.js finds the binary for this platform; its bin/ layout is <platform>_<arch>/clang-format.
const pkgDir = path.dirname(createRequire(import.meta.url).resolve("clang-format/package.json"));
const binary = path.join(pkgDir, "bin", `${process.platform}_${process.arch === "x64" ? "x64" : process.arch}`, "clang-format");
const check = process.argv.includes("--check");
const r = spawnSync(binary, [...(check ? ["--dry-run", "--Werror"] : ["-i"]), "--style=file", ...files], { cwd: root, encoding: "utf8" });
if (r.error) {
  process.stderr.write(`clang-format: ${r.error.message}\n`);
  process.exit(2);
}
if (check && r.status !== 0) {
  const bad = [...new Set([...r.stderr.matchAll(/^(\S+?):\d+:\d+: error/gm)].map((m) => path.relative(root, m[1])))];
  process.stderr.write(`clang-format: ${bad.length} of ${files.length} files need formatting (npm run format):\n${bad.map((f) => `  ${f}`).join("\n")}\n`);
}
process.exit(r.status ?? 1);
