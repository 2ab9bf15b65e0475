import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { PDFDocument, StandardFonts } from "pdf-lib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCleanFailure, kvzap, models, repoRoot, sharedDir } from "../helpers/cli.js";
import { writeMambaModel } from "../helpers/gguf-writer.js";

interface Transcript {
  model: string;
  prompt: string;
  maxTokens: number;
  command: string;
  stdout: string;
}

const reference = JSON.parse(await readFile(path.join(repoRoot, "test/fixtures/reference/llama-completion-greedy.json"), "utf8")) as {
  transcripts: Transcript[];
};

describe("kvzap run", () => {
  for (const t of reference.transcripts) {
    it(`greedy continuation on ${t.model} equals llama-completion's (${t.command.split(" 2>")[0]})`, async () => {
      const r = await kvzap([
        "run",
        path.join(sharedDir, "models", t.model),
        "--prompt",
        t.prompt,
        "--max-tokens",
        String(t.maxTokens),
        "--temp",
        "0",
        "--json",
        "--kv",
        "full",
      ]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.tokens).toHaveLength(t.maxTokens);
      // llama-completion echoes the prompt (as detokenized, with SentencePiece's leading space) before the continuation.
      const echoEnd = t.stdout.indexOf(t.prompt) + t.prompt.length;
      expect(echoEnd).toBeGreaterThan(t.prompt.length - 1);
      expect((t.stdout.slice(0, echoEnd) + out.text).trimEnd()).toBe(t.stdout.trimEnd());
      expect(out.text.length).toBeGreaterThan(40);
    });
  }

  it("streams the same text as plain output and reports stats in JSON", async () => {
    const args = ["run", models.stories, "--prompt", "Once upon a time", "-n", "24", "--temp", "0", "--kv", "full"];
    const plain = await kvzap(args);
    const json = await kvzap([...args, "--json"]);
    expect(plain.code).toBe(0);
    const out = JSON.parse(json.stdout);
    expect(plain.stdout).toBe(out.text + "\n");
    expect(out.stats.promptTokens).toBe(5);
    expect(out.stats.generatedTokens).toBe(24);
    expect(out.stats.decodeTokensPerSecond).toBeGreaterThan(0);
    expect(out.stats.promptTokensPerSecond).toBeGreaterThan(0);
    // Full cache: every byte count is the KV buffer llama.cpp allocated: 640 bytes a token × the context size.
    const full = 640 * 2048;
    expect(out.stats.kv).toEqual({ policy: "full", bytesInUse: full, bytesFullEquivalent: full, bytesFullAllocation: full, poolBytes: full });
    const small = JSON.parse((await kvzap([...args, "--json", "--ctx", "256"])).stdout);
    expect(small.stats.kv.bytesInUse).toBe(640 * 256);
    expect(small.text).toBe(out.text);
  });

  it("samples reproducibly with a seed and differently with another", async () => {
    const args = ["run", models.stories, "--prompt", "The dog", "-n", "30", "--temp", "1.0", "--json"];
    const a = JSON.parse((await kvzap([...args, "--seed", "7"])).stdout);
    const b = JSON.parse((await kvzap([...args, "--seed", "7"])).stdout);
    const c = JSON.parse((await kvzap([...args, "--seed", "8"])).stdout);
    expect(a.tokens).toEqual(b.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
  });

  it("stops before a stop string and reads the prompt from a file", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-run-"));
    try {
      await writeFile(path.join(dir, "p.txt"), "Once upon a time");
      const r = await kvzap(["run", models.stories, "--file", path.join(dir, "p.txt"), "-n", "40", "--temp", "0", "--stop", "Lily", "--json"]);
      const out = JSON.parse(r.stdout);
      expect(out.text).toBe(", there was a little girl named ");
      expect(out.stopReason).toBe("stop");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("kvzap run --ctx", () => {
  it("says when --ctx is rounded up to a multiple of 256, and when it is above the training context", async () => {
    const base = ["run", models.stories, "--prompt", "Once upon a time", "-n", "2", "--temp", "0", "--json", "--kv", "full"];
    const rounded = await kvzap([...base, "--ctx", "300"]);
    expect(rounded.code).toBe(0);
    expect(JSON.parse(rounded.stdout).stats.contextSize).toBe(512);
    expect(rounded.stderr).toMatch(/note: the context size 300 was rounded up to 512 \(llama\.cpp sizes contexts in multiples of 256\)/);
    const beyond = await kvzap([...base, "--ctx", "100000"]);
    expect(beyond.code).toBe(0);
    expect(beyond.stderr).toMatch(/note: the context size 100000 was rounded up to 100096/);
    expect(beyond.stderr).toMatch(/note: the context \(100096 tokens\) is larger than the 2048 tokens stories260K\.gguf was trained for/);
    const exact = await kvzap([...base, "--ctx", "512"]);
    expect(exact.stderr).not.toMatch(/note:/);
  });
});

describe("kvzap run --file", () => {
  it("reads a PDF through the document loader, as chat and summarize do: its text, not its source", async () => {
    const { loadDocument } = await import("../../src/documents/index.js");
    const dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-run-pdf-"));
    const pdf = path.join(dir, "story.pdf");
    const doc = await PDFDocument.create();
    const font = await doc.embedFont(StandardFonts.Helvetica);
    doc.addPage([595, 842]).drawText("Once upon a time there was a little dog named Max.", { x: 50, y: 790, size: 11, font });
    await writeFile(pdf, await doc.save());
    const text = (await loadDocument(pdf)).text;
    const source = (await readFile(pdf)).toString("latin1");
    expect(text).toMatch(/little dog named Max/);
    const r = await kvzap(["run", models.stories, "--file", pdf, "-n", "1", "--temp", "0", "--json"]);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    const { Model } = await import("../../src/engine/model.js");
    const model = await Model.load(models.stories);
    try {
      const expected = model.tokenize(text, { addSpecial: true, parseSpecial: false }).length;
      const raw = model.tokenize(source, { addSpecial: true, parseSpecial: false }).length;
      expect(out.stats.promptTokens).toBe(expected);
      expect(out.stats.promptTokens).not.toBe(raw);
    } finally {
      model.dispose();
    }
  });

  it("refuses an unreadable document with the loader's message", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-run-"));
    try {
      await writeFile(path.join(dir, "broken.pdf"), "%PDF-1.4\nnot really");
      const r = await kvzap(["run", models.stories, "--file", path.join(dir, "broken.pdf")]);
      expectCleanFailure(r);
      expect(r.stderr).toMatch(/broken\.pdf: /);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("kvzap info", () => {
  it("reports stories260K's shape and KV cost", async () => {
    const r = await kvzap(["info", models.stories, "--json", "--ctx", "1000"]);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({
      architecture: "llama",
      layers: 5,
      heads: 8,
      kvHeads: 4,
      headDim: 8,
      contextLength: 2048,
      parameters: 292800,
      chatTemplate: false,
    });
    expect(s.kvBytesPerToken).toEqual({ f16: 640, q8_0: 340 });
    expect(s.kvBytesAtContext).toEqual({ contextSize: 1000, f16: 640_000, q8_0: 340_000 });
  });

  it("reports the test-bed model (GQA 4:1, head dim 64, q8_0 weights)", async () => {
    const r = await kvzap(["info", models.testbed, "--json"]);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ layers: 8, heads: 8, kvHeads: 2, headDim: 64, contextLength: 4096, weightType: "q8_0" });
    // 8 layers × (K + V) × 2 KV heads × 64 dims × 2 bytes
    expect(s.kvBytesPerToken.f16).toBe(8 * 2 * 2 * 64 * 2);
    expect(s.kvBytesPerToken.q8_0).toBe(8 * 2 * (128 / 32) * 34);
    const text = await kvzap(["info", models.testbed]);
    expect(text.stdout).toMatch(/heads\s+8 query, 2 KV \(GQA 4:1\)/);
  });

  it("a model without attention (a real Mamba GGUF): no heads, no KV cache, no nonsense", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-info-mamba-"));
    try {
      const mamba = path.join(dir, "mamba.gguf");
      await writeMambaModel(mamba);
      const json = await kvzap(["info", mamba, "--json", "--ctx", "100"]);
      expect(json.code).toBe(0);
      expect(JSON.parse(json.stdout)).toMatchObject({
        architecture: "mamba",
        layers: 2,
        attentionLayers: 0,
        heads: 0,
        kvHeads: 0,
        headDim: 0,
        kvBytesPerToken: { f16: 0, q8_0: 0 },
      });
      const text = await kvzap(["info", mamba, "--ctx", "100"]);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(/^attention\s+none: no layer has attention, so there is no KV cache \(KVzap cannot run it; --kv full can\)$/m);
      expect(text.stdout).not.toMatch(/heads|head dim|KV per token|KV at|NaN|Infinity|\?/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("bad input", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "kvzap-bad-"));
    await writeFile(path.join(dir, "notes.gguf"), "these are not model weights\n".repeat(20));
    const full = await readFile(models.stories);
    await writeFile(path.join(dir, "truncated.gguf"), full.subarray(0, Math.floor(full.length / 2)));
    await writeFile(path.join(dir, "header-only.gguf"), full.subarray(0, 2000));
    await copyFile(models.stories, path.join(dir, "ok.gguf"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const cases: [string, () => string[], RegExp][] = [
    ["a missing model path", () => ["run", path.join(dir, "missing.gguf"), "-p", "hi"], /model file not found: .*missing\.gguf/],
    ["a file that is not GGUF", () => ["run", path.join(dir, "notes.gguf"), "-p", "hi"], /not a GGUF model file: .*notes\.gguf/],
    ["a truncated GGUF (tensor data cut)", () => ["run", path.join(dir, "truncated.gguf"), "-p", "hi"], /truncated.*truncated\.gguf/],
    ["a truncated GGUF (metadata cut)", () => ["info", path.join(dir, "header-only.gguf")], /truncated or corrupted/],
    [
      "a prompt longer than the context",
      () => ["run", path.join(dir, "ok.gguf"), "-p", "word ".repeat(400), "--ctx", "256"],
      /the prompt is 1202 tokens but the context holds 256; run with --ctx 2048 or more/,
    ],
    ["--ctx 0", () => ["run", path.join(dir, "ok.gguf"), "-p", "hi", "--ctx", "0"], /--ctx must be a whole number ≥ 16, got '0'/],
    ["an unknown flag", () => ["run", path.join(dir, "ok.gguf"), "-p", "hi", "--frobnicate"], /unknown option --frobnicate/],
    ["a directory as model", () => ["info", dir], /is a directory/],
    ["--temp abc", () => ["run", path.join(dir, "ok.gguf"), "-p", "hi", "--temp", "abc"], /--temp must be a number/],
    ["no prompt", () => ["run", path.join(dir, "ok.gguf")], /exactly one of --prompt TEXT or --file F/],
  ];
  for (const [what, args, message] of cases) {
    it(`${what}: one clear message, non-zero exit, no crash`, async () => {
      const r = await kvzap(args());
      expectCleanFailure(r);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n").length).toBeLessThanOrEqual(2);
      expect(r.stdout).toBe("");
    });
  }

  it("an unknown command lists the commands", async () => {
    const r = await kvzap(["frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(r.stderr).toMatch(/\binfo\b/);
  });
});
