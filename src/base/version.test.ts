import { readFileSync } from "node:fs";
import path from "node:path";
import { expect, it } from "vitest";
import { kvzap } from "../../test/helpers/cli.js";
import { projectRoot } from "./paths.js";

it("kvzap --version prints package.json's version", async () => {
  const pkg = JSON.parse(readFileSync(path.join(projectRoot, "package.json"), "utf8")) as { version: string };
  const r = await kvzap(["--version"]);
  expect(r).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
});
