import { readFile } from "node:fs/promises";
import { beforeAll, describe, expect, it } from "vitest";
import { corpora } from "../../test/helpers/cli.js";
import { sentences } from "./filler.js";
import { generateTask, parseTaskKinds, TASK_KINDS } from "./tasks.js";
import { parseTasksJsonl, tasksToJsonl } from "./tasks-file.js";

// a stand-in tokenizer for the unit tests: words and punctuation
const count = (t: string) => (t.match(/\w+|[^\s\w]/g) ?? []).length;

describe("generated tasks", () => {
  let filler: string[];
  beforeAll(async () => {
    filler = sentences(await readFile(`${corpora}/gutenberg-sherlock-holmes.txt`, "utf8"));
  });

  it.each(TASK_KINDS)("%s is the same for the same seed, different for another, and sized to the length", (kind) => {
    const a = generateTask(kind, 800, 3, 7, filler, count);
    const b = generateTask(kind, 800, 3, 7, filler, count);
    const c = generateTask(kind, 800, 3, 8, filler, count);
    const d = generateTask(kind, 800, 4, 7, filler, count);
    expect(b).toEqual(a);
    expect(c.prompt).not.toBe(a.prompt);
    expect(d.prompt).not.toBe(a.prompt);
    expect(a.id).toBe(`${kind}-800-3`);
    const n = count(`${a.prompt} ${a.answerPrefix}`);
    expect(n).toBeLessThanOrEqual(800 * 1.1);
    expect(n).toBeGreaterThanOrEqual(800 * 0.75);
    expect(a.answers.length).toBeGreaterThan(0);
  });

  it("writes key/value needles in the kv format, deterministically, completed from the asked key", () => {
    const a = generateTask("niah_multikey", 500, 0, 3, filler, count, "kv");
    expect(generateTask("niah_multikey", 500, 0, 3, filler, count, "kv")).toEqual(a);
    expect(a.prompt.match(/\nkey: \S+ value: \S+\n/g)).toHaveLength(4);
    const key = /key: (\S+) value:$/.exec(a.answerPrefix)![1];
    expect(a.prompt).toContain(`key: ${key} value: ${a.answers[0]}\n`);
    expect(a.id).toBe("niah_multikey-500-0-kv");
  });

  it("puts every answer of the retrieval tasks in the context, once per needle, and the question asks for it", () => {
    for (const kind of ["niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "vt", "qa"] as const) {
      const t = generateTask(kind, 600, 0, 1, filler, count);
      for (const a of t.answers.slice(0, kind === "qa" ? 1 : undefined)) expect(t.prompt).toContain(a);
    }
    const mk = generateTask("niah_multikey", 600, 0, 1, filler, count);
    // multi-key: four needles, the answer is the one whose key the question names
    expect(mk.prompt.match(/One of the special magic numbers for/g)).toHaveLength(4 + 0);
    const key = /for (\S+) mentioned/.exec(mk.answerPrefix)![1];
    expect(mk.prompt).toContain(`for ${key} is: ${mk.answers[0]}.`);
    // common words: each of the ten answers is among the most frequent words of the list
    const cwe = generateTask("cwe", 900, 0, 1, filler, count);
    const freq = new Map<string, number>();
    for (const w of cwe.prompt.match(/\d+\. (\w+)/g)!.map((s) => s.split(" ")[1])) freq.set(w, (freq.get(w) ?? 0) + 1);
    const top = [...freq.entries()]
      .sort((x, y) => y[1] - x[1])
      .slice(0, 10)
      .map(([w]) => w);
    expect(new Set(top)).toEqual(new Set(cwe.answers));
    const fwe = generateTask("fwe", 900, 0, 1, filler, count);
    const f2 = new Map<string, number>();
    const body = fwe.prompt.split("\n\n")[1];
    for (const w of body.split(" ")) f2.set(w, (f2.get(w) ?? 0) + 1);
    const top3 = [...f2.entries()]
      .sort((x, y) => y[1] - x[1])
      .slice(0, 3)
      .map(([w]) => w);
    expect(top3).toEqual(fwe.answers);
  });

  it("names a task it does not know", () => {
    expect(parseTaskKinds("all")).toEqual([...TASK_KINDS]);
    expect(() => parseTaskKinds("niah_single,nope")).toThrow(/unknown task 'nope'/);
  });

  it("round-trips through a tasks file, and refuses a malformed line with its line number", () => {
    const tasks = TASK_KINDS.map((k, i) => generateTask(k, 300, i, 5, filler, count));
    const back = parseTasksJsonl(tasksToJsonl(tasks), "t.jsonl");
    expect(back).toEqual(tasks);
    const minimal = parseTasksJsonl('{"id":"a","prompt":"Say 4.","answers":["4"]}\n\n', "m.jsonl");
    expect(minimal[0]).toMatchObject({ id: "a", task: "file", answers: ["4"], metric: "all", maxNewTokens: 32 });
    expect(() => parseTasksJsonl('{"id":"a","prompt":"x","answers":["4"]}\n{"id":"b","prompt":"x"}', "bad.jsonl")).toThrow(/bad.jsonl:2: "answers"/);
    expect(() => parseTasksJsonl("not json", "bad.jsonl")).toThrow(/bad.jsonl:1: not a JSON object/);
    expect(() => parseTasksJsonl('{"id":"a","prompt":"x","answers":["4"]}\n{"id":"a","prompt":"y","answers":["5"]}', "d.jsonl")).toThrow(/appears twice/);
  });
});
