import { renderToString } from "ink";
import { describe, expect, it } from "vitest";
import { KvPanel, verticalBars } from "./kv-panel.js";
import { kvSummary, StatusBar } from "./status-bar.js";

const MiB = 1024 * 1024;

describe("KV memory panel", () => {
  it("shows the context fill and the total against the full cache", () => {
    const out = renderToString(
      <KvPanel
        kv={{ policy: "full", bytesInUse: 5 * MiB, bytesFullEquivalent: 5 * MiB, bytesFullAllocation: 20 * MiB, poolBytes: 20 * MiB }}
        contextUsed={2048}
        contextSize={8192}
        width={100}
      />,
      { columns: 100 },
    );
    expect(out).toContain("KV memory · policy full");
    expect(out).toMatch(/context\s+█{10}░+ 2,048 \/ 8,192 tokens/);
    expect(out).toMatch(/KV\s+█+ 5\.00 MiB \/ 5\.00 MiB \(100%\)/);
    expect(out).toMatch(/held\s+█+ 20\.0 MiB \/ 20\.0 MiB \(full cache, 8,192\)/);
    expect(out).not.toContain("layer");
    expect(out).not.toContain("freed");
  });

  it("draws one labelled bar per layer when the policy reports layers", () => {
    const layers = [1, 0.5, 0.25].map((f) => ({ bytesInUse: f * MiB, bytesFullEquivalent: MiB, entries: [], blocks: [] }));
    const kv = { policy: "kvzap", bytesInUse: 1.75 * MiB, bytesFullEquivalent: 3 * MiB, bytesFullAllocation: 30 * MiB, poolBytes: 4 * MiB, layers };
    const out = renderToString(<KvPanel kv={kv} contextUsed={100} contextSize={1000} width={100} />, { columns: 100 });
    // memory still held is never called freed: the panel shows what the pool holds against a full cache's allocation
    expect(out).not.toContain("freed");
    expect(out).toMatch(/held\s+█+[▏▎▍▌▋▊▉]?░+ 4\.00 MiB \/ 30\.0 MiB \(full cache, 1,000\)/);
    expect(out).toMatch(/layer 0\s+█+ 1\.00 MiB \/ 1\.00 MiB \(100%\)/);
    expect(out).toMatch(/layer 1\s+█+░+ 512 KiB \/ 1\.00 MiB \(50%\)/);
    expect(out).toMatch(/layer 2\s+█+░+ 256 KiB \/ 1\.00 MiB \(25%\)/);
    expect(out).toMatch(/KV\s+█+[▏▎▍▌▋▊▉]?░+ 1\.75 MiB \/ 3\.00 MiB \(58%\)/);
  });

  it("draws many layers as side-by-side vertical bars", () => {
    const layers = Array.from({ length: 32 }, (_, i) => ({ bytesInUse: (i / 31) * MiB, bytesFullEquivalent: MiB, entries: [], blocks: [] }));
    const out = renderToString(
      <KvPanel
        kv={{ policy: "kvzap", bytesInUse: 16 * MiB, bytesFullEquivalent: 32 * MiB, bytesFullAllocation: 64 * MiB, poolBytes: 16 * MiB, layers }}
        contextUsed={1}
        contextSize={2}
        width={100}
      />,
      { columns: 100 },
    );
    expect(out).toContain("per layer");
    expect(out).toMatch(/L0\s+L31/);
    expect(out).not.toMatch(/layer 0 /);
    const rows = verticalBars([0, 0.5, 1], 4, "");
    expect(rows).toEqual(["  █", "  █", " ██", " ██"]);
  });
});

describe("status bar", () => {
  it("names the model, the last speed, the context and the KV memory (blocks in use and memory held when pairs were dropped)", () => {
    const out = renderToString(
      <StatusBar
        modelName="m"
        contextUsed={5236}
        contextSize={8192}
        kv={{ policy: "full", bytesInUse: 5 * MiB, bytesFullEquivalent: 5 * MiB, bytesFullAllocation: 5 * MiB, poolBytes: 5 * MiB }}
        tokensPerSecond={367.2}
        hint="/help for commands"
        width={100}
      />,
      { columns: 100 },
    );
    expect(out).toMatch(/m · 367 tok\/s · ctx 5,236\/8,192 · KV 5\.00 MiB\s+\/help for commands/);
    expect(kvSummary({ policy: "kvzap", bytesInUse: 1.3 * MiB, bytesFullEquivalent: 5 * MiB, bytesFullAllocation: 20 * MiB, poolBytes: 4 * MiB })).toBe(
      "KV 1.30 MiB in use (26% of 5.00 MiB) · 4.00 MiB held",
    );
  });
});

describe("the KV policy on the status bar and the /kv panel", () => {
  const kv = {
    policy: "kvzap",
    bytesInUse: 1.3 * MiB,
    bytesFullEquivalent: 5 * MiB,
    bytesFullAllocation: 20 * MiB,
    poolBytes: 4 * MiB,
    tau: -4,
    tauEffective: -3.2,
    window: 128,
    evicted: 12345,
    budgetEvicted: 345,
  };
  const figure = "KV 1\\.30 MiB in use \\(26% of 5\\.00 MiB\\) · 4\\.00 MiB held";
  it("shows the policy, τ and the effective τ under a budget, evictions, the budget and the memory held", () => {
    const bar = renderToString(
      <StatusBar modelName="m" contextUsed={900} contextSize={2048} kv={kv} kvBudget={2 * MiB} tokensPerSecond={50} hint="/help" width={200} />,
      { columns: 200 },
    );
    expect(bar).toMatch(
      new RegExp(`m · 50\\.0 tok/s · ctx 900/2,048 · ${figure} · kvzap τ −4\\.00→−3\\.20 · budget 2\\.00 MiB · 12,345 dropped \\(345 by the budget\\)`),
    );
    const panel = renderToString(<KvPanel kv={kv} kvBudget={2 * MiB} contextUsed={900} contextSize={2048} width={100} />, { columns: 100 });
    expect(panel).toMatch(/policy kvzap τ −4\.00→−3\.20 · budget 2\.00 MiB/);
    expect(panel).toMatch(/KV\s+█+.* 1\.30 MiB \/ 5\.00 MiB \(26%\)/);
    expect(panel).toMatch(/dropped\s+12,345 pairs \(345 by the budget\)/);
    expect(panel).toMatch(/held\s+█+.* 4\.00 MiB \/ 20\.0 MiB/);
    expect(panel).not.toContain("freed");
  });

  it("drops whole fields, least important first, as the terminal narrows, down to 40 columns", () => {
    const line = (width: number) => {
      const out = renderToString(
        <StatusBar
          modelName="stories260K"
          contextUsed={900}
          contextSize={2048}
          kv={kv}
          kvBudget={2 * MiB}
          tokensPerSecond={50}
          hint="/help for commands"
          width={width}
        />,
        { columns: width },
      );
      return out.split("\n").find((l) => l.includes("ctx"))!;
    };
    for (const width of [40, 60, 80, 100, 120, 200]) {
      const text = line(width);
      expect([...text.trimEnd()].length).toBeLessThanOrEqual(width);
      expect(text).toContain("ctx 900/2,048"); // never cut to "ctx 9…"
      expect(text).not.toContain("…");
    }
    expect(line(60)).toMatch(/ctx 900\/2,048 · KV 4\.00 MiB held/);
    expect(line(40)).toMatch(/^ctx 900\/2,048/);
    expect(line(120)).toMatch(new RegExp(`ctx 900/2,048 · ${figure} · kvzap τ −4\\.00→−3\\.20`));
    expect(line(200)).toMatch(
      new RegExp(`^stories260K · 50\\.0 tok/s · ctx 900/2,048 · ${figure} · kvzap τ −4\\.00→−3\\.20 · budget 2\\.00 MiB · 12,345 dropped`),
    );
  });
});
