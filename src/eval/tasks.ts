// Seeded synthetic long-context tasks in the style of RULER (Hsieh et al., 2024): needles in filler text, variable
// tracking, word extraction and question answering over an inserted passage. A task is a user message (context and
// question), an answer prefix that the model continues, and the strings a correct answer contains.
import { rng, shuffled, subSeed } from "../calibrate/rng.js";
import { UsageError } from "../base/errors.js";

export const TASK_KINDS = ["niah_single", "niah_multikey", "niah_multivalue", "niah_multiquery", "vt", "cwe", "fwe", "qa"] as const;
export type TaskKind = (typeof TASK_KINDS)[number];

/** "all": the share of the answers found in the output (RULER's string_match_all); "part": 1 if any is found. */
export type Metric = "all" | "part";

export interface EvalTask {
  id: string;
  task: string;
  /** The prompt length the task was generated for, in tokens. */
  length: number;
  /** The user's message: the context and the question. */
  prompt: string;
  /** Text the answer starts with (appended after the assistant turn, or after the prompt for plain completion). */
  answerPrefix: string;
  answers: string[];
  metric: Metric;
  maxNewTokens: number;
}

/** Counts tokens of a text (the model's tokenizer in real runs). */
export type TokenCounter = (text: string) => number;

interface Parts {
  instruction: string;
  /** Inserted into the filler at seeded depths, in order of appearance. */
  inserts: string[];
  /** Replaces the filler entirely (variable tracking, word lists); inserts are ignored then. */
  body?: (budget: number) => string;
  question: string;
  answerPrefix: string;
  answers: string[];
  metric: Metric;
  maxNewTokens: number;
}

const WORDS = (
  "amber anchor apple arrow aspen badge basil beacon birch blossom bracket breeze bronze cactus candle canyon carbon " +
  "cedar cherry cinder clover cobalt comet copper coral cotton crater crimson crystal dagger delta desert falcon " +
  "feather fern flint forest fossil garnet glacier granite harbor hazel helmet hollow ivory jasmine juniper kettle " +
  "lantern lemon lilac linen lotus magnet maple marble meadow mirror mosaic nectar nickel oasis olive onyx orchid " +
  "pebble pepper pillar pine plume prism quartz quill raven reef ribbon saddle sapphire satin shadow silver spruce " +
  "summit thistle thunder timber topaz tulip velvet violet walnut willow window winter zephyr"
).split(" ");

function pick<T>(items: readonly T[], next: () => number): T {
  return items[Math.floor(next() * items.length)];
}

function keyName(next: () => number): string {
  return `${pick(WORDS, next)}-${pick(WORDS, next)}`;
}

function distinct(n: number, make: () => string): string[] {
  const out = new Set<string>();
  for (let guard = 0; out.size < n && guard < n * 100; guard++) out.add(make());
  return [...out];
}

/**
 * How needles read. "ruler": RULER's sentences with 7-digit numbers ("One of the special magic numbers for K is: V.",
 * asked as a question). "kv": bare "key: K value: V" lines with 5-character codes, completed from "key: K value:"
 * (the form the retrieval test-bed model was trained on; it does not read RULER's sentences).
 */
export type NeedleFormat = "ruler" | "kv";

interface NeedleStyle {
  instruction: string;
  needle(key: string, value: string): string;
  value(next: () => number): string;
  key(next: () => number): string;
  /** The question and the answer prefix for the values of `keys`. */
  ask(keys: string[], plural: boolean): { question: string; answerPrefix: string };
}

const STYLES: Record<NeedleFormat, NeedleStyle> = {
  ruler: {
    instruction: "Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards.",
    needle: (k, v) => `One of the special magic numbers for ${k} is: ${v}.`,
    value: (next) => String(1_000_000 + Math.floor(next() * 9_000_000)),
    key: (next) => keyName(next),
    ask: (keys, plural) =>
      plural
        ? {
            question: `What are all the special magic numbers for ${keys.join(" and ")} mentioned in the provided text?`,
            answerPrefix: `The special magic numbers for ${keys.join(" and ")} mentioned in the provided text are`,
          }
        : {
            question: `What is the special magic number for ${keys[0]} mentioned in the provided text?`,
            answerPrefix: `The special magic number for ${keys[0]} mentioned in the provided text is`,
          },
  },
  kv: {
    instruction: "",
    needle: (k, v) => `\nkey: ${k} value: ${v}\n`,
    // a code that opens with a letter, and a one-word key: the test-bed model copies these (not hyphenated keys)
    value: (next) =>
      "abcdefghijkmnpqrstuvwxyz"[Math.floor(next() * 24)] +
      Array.from({ length: 4 }, () => "abcdefghijkmnpqrstuvwxyz23456789"[Math.floor(next() * 32)]).join(""),
    key: (next) => pick(WORDS, next),
    // one completion answers one key: the first asked
    ask: (keys) => ({ question: "", answerPrefix: `\nkey: ${keys[0]} value:` }),
  },
};

function parts(kind: TaskKind, next: () => number, filler: readonly string[], format: NeedleFormat): Parts {
  const st = STYLES[format];
  switch (kind) {
    case "niah_single": {
      const key = st.key(next);
      const value = st.value(next);
      return { instruction: st.instruction, inserts: [st.needle(key, value)], ...st.ask([key], false), answers: [value], metric: "all", maxNewTokens: 16 };
    }
    case "niah_multikey": {
      // the asked key's needle among three distractor keys
      const keys = distinct(4, () => st.key(next));
      const values = keys.map(() => st.value(next));
      const inserts = shuffled(
        keys.map((k, i) => st.needle(k, values[i])),
        next,
      );
      return { instruction: st.instruction, inserts, ...st.ask([keys[0]], false), answers: [values[0]], metric: "all", maxNewTokens: 16 };
    }
    case "niah_multivalue": {
      const key = st.key(next);
      const values = distinct(4, () => st.value(next));
      return {
        instruction: st.instruction,
        inserts: values.map((v) => st.needle(key, v)),
        ...st.ask([key], true),
        answers: format === "kv" ? values.slice(0, 1) : values,
        metric: format === "kv" ? "part" : "all",
        maxNewTokens: 48,
      };
    }
    case "niah_multiquery": {
      const keys = distinct(4, () => st.key(next));
      const values = keys.map(() => st.value(next));
      const asked = format === "kv" ? 1 : 2;
      return {
        instruction: st.instruction,
        inserts: shuffled(
          keys.map((k, i) => st.needle(k, values[i])),
          next,
        ),
        ...st.ask(keys.slice(0, asked), true),
        answers: values.slice(0, asked),
        metric: "all",
        maxNewTokens: 32,
      };
    }
    case "vt": {
      const names = distinct(5, () => pick(WORDS, next).toUpperCase().slice(0, 5));
      const value = String(10_000 + Math.floor(next() * 90_000));
      const chain = [`VAR ${names[0]} = ${value}.`, ...names.slice(1).map((n, i) => `VAR ${n} = VAR ${names[i]}.`)];
      return {
        instruction: "Memorize and track the chain(s) of variable assignment hidden in the following text.",
        inserts: chain,
        question: `Question: Find all variables that are assigned the value ${value} in the text above.`,
        answerPrefix: `Answer: According to the chain(s) of variable assignment in the text above, ${names.length} variables are assigned the value ${value}, they are:`,
        answers: names,
        metric: "all",
        maxNewTokens: 30,
      };
    }
    case "cwe": {
      // the ten common words appear more often than any other (up to 30 times each, as in RULER), the others 3 times
      const common = distinct(10, () => pick(WORDS, next));
      const rest = WORDS.filter((w) => !common.includes(w));
      const coined = distinct(4000, () => Array.from({ length: 6 }, () => String.fromCharCode(97 + Math.floor(next() * 26))).join(""));
      const pool = [...shuffled(rest, next), ...coined];
      return {
        instruction: "Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.",
        inserts: [],
        body: (size) => {
          const perCommon = Math.max(4, Math.min(30, Math.floor((size * 0.3) / 10)));
          const rare = pool.slice(0, Math.max(5, Math.floor((size - 10 * perCommon) / 3)));
          const words: string[] = [];
          for (const w of common) for (let i = 0; i < perCommon; i++) words.push(w);
          for (const w of rare) for (let i = 0; i < 3; i++) words.push(w);
          return shuffled(words, rng(subSeed(size, "cwe", common.join())))
            .map((w, i) => `${i + 1}. ${w}`)
            .join(" ");
        },
        question: "Question: What are the 10 most common words in the above list?",
        answerPrefix: "Answer: The top 10 words that appear most often in the list are:",
        answers: common,
        metric: "all",
        maxNewTokens: 120,
      };
    }
    case "fwe": {
      // RULER's frequent-word extraction: words drawn from a Zipf-like law over coded words; the three most frequent
      const coded = distinct(40, () => Array.from({ length: 5 }, () => String.fromCharCode(97 + Math.floor(next() * 26))).join(""));
      return {
        instruction: "Read the following coded text and track the frequency of each coded word. Find the three most frequently appeared coded words.",
        inserts: [],
        body: (budget) => {
          const n = Math.max(60, budget);
          const weights = coded.map((_, i) => 1 / Math.pow(i + 1, 1.3));
          const total = weights.reduce((a, b) => a + b, 0);
          const words: string[] = [];
          coded.forEach((w, i) => {
            const c = Math.max(1, Math.round((weights[i] / total) * n));
            for (let k = 0; k < c; k++) words.push(w);
          });
          return shuffled(words, rng(subSeed(n, "fwe", coded.join()))).join(" ");
        },
        question:
          "Question: Do not provide any explanation. Please ignore the dots '....'. What are the three most frequently appeared words in the above coded text?",
        answerPrefix: "Answer: According to the coded text above, the three most frequently appeared words are:",
        answers: coded.slice(0, 3),
        metric: "all",
        maxNewTokens: 50,
      };
    }
    case "qa": {
      // a passage of the filler text stated as a fact about a seeded entity, asked about after the distractors
      const who = `${pick(WORDS, next)} ${pick(WORDS, next)}`.replace(/^\w/, (c) => c.toUpperCase());
      const where = pick(WORDS, next);
      const year = String(1700 + Math.floor(next() * 300));
      const passage = `${pick(filler, next)} The expedition led by ${who} reached the ${where} valley in the year ${year}. ${pick(filler, next)}`;
      return {
        instruction:
          "Answer the question based on the given documents. Only give me the answer and do not output any other words.\n\nThe following are given documents.",
        inserts: [`Document: ${passage}`],
        question: `Answer the question based on the given documents. Only give me the answer and do not output any other words.\n\nQuestion: In which year did the expedition led by ${who} reach the ${where} valley?`,
        answerPrefix: "Answer:",
        answers: [year, `the year ${year}`],
        metric: "part",
        maxNewTokens: 12,
      };
    }
  }
}

/**
 * The task `index` of `kind` at `length` tokens: a function of (seed, kind, length, index) and the filler, so that the
 * same seed gives the same prompts. Filler sentences are added until the prompt reaches `length` tokens as `count`
 * measures them (the model's tokenizer; the chat template adds a few more).
 */
export function generateTask(
  kind: TaskKind,
  length: number,
  index: number,
  seed: number,
  filler: readonly string[],
  count: TokenCounter,
  format: NeedleFormat = "ruler",
): EvalTask {
  const next = rng(subSeed(seed, "task", kind, length, index));
  const p = parts(kind, next, filler, format);
  const frame = `${p.instruction}\n\n\n\n${p.question} ${p.answerPrefix}`;
  const fixed = count(frame) + p.inserts.reduce((a, s) => a + count(s) + 1, 0);
  const budget = Math.max(0, length - fixed);
  let context: string;
  if (p.body) {
    // grow the body's size parameter until it fills the budget (bodies are monotone in it)
    let lo = 1;
    let hi = Math.max(2, budget);
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (count(p.body(mid)) <= budget) lo = mid;
      else hi = mid - 1;
    }
    // the search drew from the task's generator: rebuild the parts from the seed so that the answers and the body
    // come from the same draws whatever the search did
    context = parts(kind, rng(subSeed(seed, "task", kind, length, index)), filler, format).body!(lo);
  } else {
    const chosen: string[] = [];
    let used = 0;
    let at = Math.floor(next() * filler.length);
    while (chosen.length < filler.length) {
      const s = filler[at % filler.length];
      const c = count(s) + 1;
      if (used + c > budget) break;
      chosen.push(s);
      used += c;
      at++;
    }
    // inserts at seeded depths, kept in order
    const depths = p.inserts.map(() => Math.floor(next() * (chosen.length + 1))).sort((a, b) => a - b);
    const out: string[] = [];
    let d = 0;
    for (let i = 0; i <= chosen.length; i++) {
      while (d < depths.length && depths[d] === i) out.push(p.inserts[d++]);
      if (i < chosen.length) out.push(chosen[i]);
    }
    context = out.join(" ");
  }
  return {
    id: `${kind}-${length}-${index}${format === "ruler" ? "" : `-${format}`}`,
    task: kind,
    length,
    prompt: [p.instruction, context, p.question].filter((x) => x !== "").join("\n\n"),
    answerPrefix: p.answerPrefix,
    answers: p.answers,
    metric: p.metric,
    maxNewTokens: p.maxNewTokens,
  };
}

export function parseTaskKinds(list: string): TaskKind[] {
  const out: TaskKind[] = [];
  for (const raw of list
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    if (raw === "all") out.push(...TASK_KINDS);
    else if ((TASK_KINDS as readonly string[]).includes(raw)) out.push(raw as TaskKind);
    else throw new UsageError(`unknown task '${raw}'; the tasks are ${TASK_KINDS.join(", ")} (or all)`);
  }
  return [...new Set(out)];
}
