// The KVzip+ oracle in the fork against a brute-force computation in JS from the same captured queries, keys, values,
// attn_norm rows and the model's own output projection (read from the GGUF file).
import { describe, expect, it } from "vitest";
import { models } from "../../test/helpers/cli.js";
import { bruteForceOracle, relativeError } from "../calibrate/oracle-reference.js";
import { loadAddon } from "./addon.js";
import { Model } from "./model.js";

describe("KVzip+ oracle", () => {
  it("equals a dense brute-force computation on stories260K (1e-4 relative), on every device this build has", async () => {
    const model = await Model.load(models.stories);
    const s = await model.createSession({ contextSize: 256, batchSize: 16, kv: { policy: "kvzap", oracle: true }, kvType: "f32" });
    try {
      const text = "Once upon a time, there was a little dog named Max. Max liked to run.";
      const ctx = model.tokenize(text);
      const repeat = model.tokenize(`\n\nRepeat the previous context exactly.\n\n${text}`, { addSpecial: false });
      await s.setPrompt([...ctx, ...repeat]);
      const n = ctx.length + repeat.length;
      const context: [number, number] = [0, ctx.length];
      const queries: [number, number] = [n - (ctx.length - 1), n];
      const want = await bruteForceOracle(s, models.stories, context, queries);
      expect(Math.max(...want)).toBeGreaterThan(0);
      // the CPU kernel everywhere, the CUDA one where this build sees a device
      const cuda = loadAddon().systemInfo().cudaDevices > 0;
      for (const device of cuda ? (["cpu", "cuda"] as const) : (["cpu"] as const)) {
        const got = await s.oracleScores(context, queries, device);
        expect(got.device).toBe(device);
        expect(got.scores.length).toBe(want.length);
        expect(relativeError(got.scores, want)).toBeLessThanOrEqual(1e-4);
      }
      expect((await s.oracleScores(context, queries)).device).toBe(cuda ? "cuda" : "cpu");
      if (!cuda)
        await expect(s.oracleScores(context, queries, "cuda")).rejects.toThrow(/^no CUDA device: the addon was built without CUDA, or no GPU is visible/);
      // a context that ends after the last query is refused: no query sees those keys
      await expect(s.oracleScores([0, n], [2, n - 1])).rejects.toThrow(/the scored context must end where the queries end or before/);
    } finally {
      s.dispose();
      model.dispose();
    }
  });
});
