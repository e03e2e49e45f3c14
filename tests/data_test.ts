import assert from "node:assert/strict";
import { TextTokenizer } from "../lib/io/tokenizer.ts";
import { type DataRecord, MAX_LINE_CHARS, parseJsonl, readJsonl } from "../lib/data/records.ts";
import { tokenizeData, tokenizeRecord, truncationReport } from "../lib/data/examples.ts";
import { assistantSpans } from "../lib/data/assistant_spans.ts";
import { DataLoader, lengthGroupedOrder } from "../lib/data/loader.ts";
import { Rng } from "../lib/random.ts";
import { prepareTargets } from "../lib/model/batch.ts";
import { tinyFiles } from "./_tiny_files.ts";

const tok = new TextTokenizer(tinyFiles());
const id = (c: string) => tok.encode(c, { addSpecialTokens: false })[0];

Deno.test("records: the three formats, blank lines, and bad lines named by file and line", async () => {
  const text = '{"text": "ab"}\n\n{"prompt": "p", "completion": "c", "id": 7}\r\n' +
    '{"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}\n';
  assert.deepEqual(parseJsonl(text, "f.jsonl").map((r) => [r.kind, r.line]), [["text", 1], ["prompt", 3], [
    "messages",
    4,
  ]]);
  const bad: [string, RegExp][] = [
    ['{"text": "a"}\n{oops', /f\.jsonl:2: invalid JSON/],
    ["[1]", /f\.jsonl:1: expected a JSON object/],
    ['{"foo": 1}', /f\.jsonl:1: expected a "text".*found "foo"/],
    ['{"text": "a", "prompt": "b"}', /f\.jsonl:1: ambiguous/],
    ['{"prompt": "a"}', /f\.jsonl:1: "completion" is missing/],
    ['{"completion": "a"}', /f\.jsonl:1: "prompt" is missing/],
    ['{"prompt": "a", "completion": 3}', /f\.jsonl:1: "completion" must be a string, got number/],
    ['{"messages": []}', /f\.jsonl:1: "messages" must be a non-empty array/],
    ['{"messages": [{"role": "user"}]}', /f\.jsonl:1: messages\[0\]\.content must be a string, got undefined/],
    ['{"messages": [{"role": "user", "content": "x"}]}', /f\.jsonl:1: "messages" has no assistant turn/],
    ["\n\n", /f\.jsonl: no data lines/],
  ];
  for (const [t, re] of bad) assert.throws(() => parseJsonl(t, "f.jsonl"), re);
  await assert.rejects(readJsonl("/nonexistent/x.jsonl"), /Cannot read data file \/nonexistent\/x\.jsonl/);
});

Deno.test("examples: text trains on every token after BOS, with EOS appended", () => {
  const ex = tokenizeRecord(tok, { kind: "text", line: 1, text: "ab" });
  assert.deepEqual([...ex.inputIds], [1, id("a"), id("b"), 2]);
  assert.deepEqual([...ex.labels], [1, id("a"), id("b"), 2]);
  assert.equal(ex.targets, 3);
  // No EOS defined: none appended.
  const files = tinyFiles();
  files.tokenizerConfig = {};
  files.specialTokensMap = {};
  const noEos = tokenizeRecord(new TextTokenizer(files), { kind: "text", line: 1, text: "ab" });
  assert.deepEqual([...noEos.inputIds], [1, id("a"), id("b")]);
});

Deno.test("examples: prompt/completion masks the prompt, including BOS", () => {
  const ex = tokenizeRecord(tok, { kind: "prompt", line: 1, prompt: "ab=", completion: "ba" });
  assert.deepEqual([...ex.inputIds], [1, id("a"), id("b"), id("="), id("b"), id("a"), 2]);
  assert.deepEqual([...ex.labels], [-100, -100, -100, -100, id("b"), id("a"), 2]);
  assert.equal(ex.targets, 3);
});

Deno.test("examples: a post-processor that already ends with EOS gets no second one", () => {
  const files = tinyFiles();
  const pp = files.tokenizer.post_processor as { single: unknown[]; special_tokens: Record<string, unknown> };
  pp.single = [...pp.single, { SpecialToken: { id: "</s>", type_id: 0 } }];
  pp.special_tokens["</s>"] = { id: "</s>", ids: [2], tokens: ["</s>"] };
  const eosTok = new TextTokenizer(files);
  const text = tokenizeRecord(eosTok, { kind: "text", line: 1, text: "ab" });
  assert.deepEqual([...text.inputIds], [1, id("a"), id("b"), 2]);
  const pc = tokenizeRecord(eosTok, { kind: "prompt", line: 1, prompt: "a=", completion: "b" });
  assert.deepEqual([...pc.labels], [-100, -100, -100, id("b"), 2]);
});

Deno.test("examples: a BPE merge across the prompt/completion boundary is trained on", () => {
  const vocab = { "</s>": 0, x: 1, a: 2, b: 3, ab: 4 };
  const bpe = new TextTokenizer({
    tokenizer: { model: { type: "BPE", vocab, merges: ["a b"] }, decoder: { type: "Fuse" } },
    tokenizerConfig: { eos_token: "</s>" },
  });
  const ex = tokenizeRecord(bpe, { kind: "prompt", line: 1, prompt: "xa", completion: "b" });
  assert.deepEqual([...ex.inputIds], [1, 4, 0]);
  assert.deepEqual([...ex.labels], [-100, 4, 0]);
});

Deno.test("examples: chat trains on assistant turns only, from each content through its end-of-turn token", () => {
  const messages = [
    { role: "system", content: "be brief" },
    { role: "user", content: "hi" },
    { role: "assistant", content: "yo" },
    { role: "user", content: "q" },
    { role: "assistant", content: "z" },
  ];
  const ex = tokenizeRecord(tok, { kind: "messages", line: 3, messages });
  const text = "<s><<SYS>>\nbe brief\n<</SYS>>\n\n[INST] hi [/INST] yo</s>[INST] q [/INST] z</s>";
  assert.equal(tok.decode([...ex.inputIds]), text);
  // Byte-level: one token per character, and one for each of <s> and </s>.
  const trained = [...ex.labels].map((l, i) => l === -100 ? "_" : tok.decode([ex.inputIds[i]])).join("");
  const before1 = "<s><<SYS>>\nbe brief\n<</SYS>>\n\n[INST] hi [/INST] ".length - 2;
  assert.equal(trained, "_".repeat(before1) + "yo</s>" + "_".repeat("[INST] q [/INST] ".length) + "z</s>");
  assert.equal(ex.targets, 2 + 1 + 1 + 1);
  const noTemplate = tinyFiles();
  delete noTemplate.tokenizerConfig!.chat_template;
  assert.throws(
    () => tokenizeRecord(new TextTokenizer(noTemplate), { kind: "messages", line: 5, messages }),
    /no chat_template/,
  );
  const odd = tinyFiles();
  odd.tokenizerConfig!.chat_template = "{{ messages | length }}";
  assert.throws(
    () => tokenizeRecord(new TextTokenizer(odd), { kind: "messages", line: 5, file: "d.jsonl", messages }),
    /d\.jsonl:5: assistant turn 2 is not in the chat template's render/,
  );
});

Deno.test("assistant spans: repeated words, header words, merged system prompts and think blocks", () => {
  const specials = ["<s>", "<e>"];
  const span = (text: string, messages: { role: string; content: string }[]) =>
    assistantSpans(text, messages, specials, "d.jsonl:1").map(([s, e]) => text.slice(s, e));
  const chatml = (ms: [string, string][]) => ms.map(([r, c]) => `<s>${r}\n${c}<e>\n`).join("");
  const turns = (ms: [string, string][]) => ms.map(([role, content]) => ({ role, content }));
  const same: [string, string][] = [["user", "yes"], ["assistant", "yes"]];
  assert.deepEqual(span(chatml(same), turns(same)), ["yes<e>"]);
  const header: [string, string][] = [["user", "user"], ["assistant", "assistant"]];
  assert.deepEqual(span(chatml(header), turns(header)), ["assistant<e>"]);
  // Gemma-style: the system prompt opens the first user turn; the assistant repeats it.
  const gemma = "<s>user\nOK\n\nhi<e>\n<s>model\nOK<e>\n";
  assert.deepEqual(span(gemma, turns([["system", "OK"], ["user", "hi"], ["assistant", "OK"]])), ["OK<e>"]);
  // Qwen3-style: an earlier turn loses its reasoning, the last keeps it.
  const think = "<think>\nwhy\n</think>\n\nA";
  const qwen = "<s>user\nq<e>\n<s>assistant\nA<e>\n<s>user\nr<e>\n<s>assistant\n<think>\nwhy\n</think>\n\nA<e>\n";
  const ms = turns([["user", "q"], ["assistant", think], ["user", "r"], ["assistant", think]]);
  assert.deepEqual(span(qwen, ms), ["A<e>", "<think>\nwhy\n</think>\n\nA<e>"]);
  assert.throws(() => span(chatml(same), turns([["user", "yes"], ["assistant", " "]])), /turn 1 is empty/);
});

Deno.test("examples: a chat template error names tokenizer_config.json and the data file and line", () => {
  const files = tinyFiles();
  files.tokenizerConfig!.chat_template = "{{ raise_exception('Conversation roles must alternate') }}";
  const [record] = parseJsonl(
    '\n{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}',
    "chat.jsonl",
  );
  assert.throws(
    () => tokenizeRecord(new TextTokenizer(files), record),
    /tokenizer_config\.json: chat_template failed for chat\.jsonl:2: Conversation roles must alternate/,
  );
});

Deno.test("examples: --max-seq-len truncation is counted and examples left without targets are skipped", () => {
  const records = parseJsonl(
    '{"text": "abcdef"}\n{"prompt": "abcdefgh", "completion": "x"}\n{"text": "a"}\n',
    "t.jsonl",
  );
  const data = tokenizeData(tok, records, 4);
  assert.equal(data.examples.length, 2);
  assert.equal(data.truncated, 2);
  assert.equal(data.truncatedTokens, (8 - 4) + (11 - 4));
  assert.deepEqual(data.skippedLines, [2]);
  assert.equal(data.targets, 3 + 2);
  assert.match(
    truncationReport(data, 4),
    /2 examples truncated to 4 tokens \(11 tokens cut\); 1 examples skipped .*lines 2/,
  );
  assert.equal(truncationReport(tokenizeData(tok, records), Infinity), "");
  assert.throws(() => tokenizeData(tok, records.slice(1, 2), 3), /No example has a token to train on/);
});

function examples(lengths: number[]) {
  return lengths.map((n, i) => {
    const ids = Int32Array.from({ length: n }, (_, j) => 3 + ((i + j) % 10));
    return { inputIds: ids, labels: ids.slice(), targets: n - 1, line: i + 1 };
  });
}

Deno.test("loader: file order, right padding, steps never span epochs, tokens weight the step", () => {
  const loader = new DataLoader(examples([2, 4, 3, 5, 2]), { batchSize: 2, gradAccum: 2, shuffle: false, padId: 9 });
  assert.equal(loader.stepsPerEpoch, 2);
  const s1 = loader.nextStep();
  assert.deepEqual(s1.batches.map((b) => b.lengths), [[2, 4], [3, 5]]);
  const b = s1.batches[0];
  assert.deepEqual([b.batchSize, b.seqLen], [2, 4]);
  assert.deepEqual([...b.inputIds.slice(0, 4)], [3, 4, 9, 9]);
  assert.deepEqual([...b.labels.slice(0, 4)], [3, 4, -100, -100]);
  assert.equal(s1.tokens, 1 + 3 + 2 + 4);
  // The model's shift agrees on what counts.
  assert.equal(s1.batches.reduce((n, mb) => n + prepareTargets(mb, 16).tokens, 0), s1.tokens);
  const s2 = loader.nextStep();
  assert.deepEqual([s2.batches.length, s2.batches[0].batchSize, s2.epoch], [1, 1, 0]);
  assert.deepEqual(loader.position, { epoch: 1, index: 0, seed: 42 });
  assert.deepEqual(loader.nextStep().batches[0].lengths, [2, 4]);
});

Deno.test("loader: length grouping follows transformers (megabatches sorted longest first)", () => {
  const lengths = Array.from({ length: 40 }, (_, i) => 1 + ((i * 7) % 23));
  const order = lengthGroupedOrder(lengths, 2, new Rng(3));
  assert.deepEqual([...order].sort((a, b) => a - b), lengths.map((_, i) => i));
  // mult = min(40 / 8, 50) = 5: megabatches of 10, each sorted by decreasing length but for the swapped head.
  assert.equal(lengths[order[0]], Math.max(...lengths));
  for (let m = 0; m < 4; m++) {
    const mb = order.slice(m * 10 + 1, m * 10 + 10).map((i) => lengths[i]);
    assert.deepEqual(mb, [...mb].sort((a, b) => b - a));
  }
  // Same seed, same order; another seed, another order.
  assert.deepEqual(lengthGroupedOrder(lengths, 2, new Rng(3)), order);
  assert.notDeepEqual(lengthGroupedOrder(lengths, 2, new Rng(4)), order);
});

Deno.test("loader: saving and restoring the position resumes exactly, across epochs", () => {
  const ex = examples(Array.from({ length: 23 }, (_, i) => 2 + (i % 9)));
  const opts = { batchSize: 2, gradAccum: 3, seed: 7 };
  const a = new DataLoader(ex, opts);
  const all = Array.from({ length: 11 }, () => a.nextStep());
  const b = new DataLoader(ex, opts);
  for (let i = 0; i < 5; i++) b.nextStep();
  const saved = JSON.parse(JSON.stringify(b.position));
  const c = new DataLoader(ex, opts);
  c.restore(saved);
  const rest = Array.from({ length: 6 }, () => c.nextStep());
  assert.deepEqual(rest, all.slice(5));
  // Epochs are shuffled differently and each is a permutation.
  const epochLines = (e: number) =>
    all.filter((s) => s.epoch === e).flatMap((s) => s.batches.flatMap((mb) => mb.lengths)).length;
  assert.equal(epochLines(0), 23);
  assert.equal(a.stepsPerEpoch, 4);
  assert.throws(() => c.restore({ ...saved, seed: 8 }), /saved with seed 8, not 7/);
  assert.throws(() => new DataLoader([], opts), /no examples/);
  assert.throws(() => new DataLoader(ex, { batchSize: 0, gradAccum: 1 }), /batchSize = 0/);
});

Deno.test("data: a long record is tokenized only as far as --max-seq-len needs, with the same kept tokens and labels", () => {
  const long = "the quick brown fox jumps over the lazy dog; ".repeat(200);
  const records: DataRecord[] = [
    { kind: "text", line: 1, text: long },
    { kind: "prompt", line: 2, prompt: "q: ", completion: long },
    { kind: "prompt", line: 3, prompt: long, completion: "a" },
    { kind: "messages", line: 4, messages: [{ role: "user", content: "hi" }, { role: "assistant", content: long }] },
  ];
  for (const maxSeqLen of [30, 60]) {
    const data = tokenizeData(tok, records, maxSeqLen);
    assert.equal(data.truncated, 4);
    assert.equal(data.truncatedUncounted, 4, "each was cut before tokenizing it whole");
    assert.deepEqual(data.skippedLines, [3], "the completion lies past the kept tokens");
    for (const [i, ex] of data.examples.entries()) {
      const whole = tokenizeRecord(tok, records[[0, 1, 3][i]]);
      assert.deepEqual([...ex.inputIds], [...whole.inputIds.slice(0, maxSeqLen)], `record ${i}`);
      assert.deepEqual([...ex.labels], [...whole.labels.slice(0, maxSeqLen)], `record ${i}`);
    }
    assert.match(truncationReport(data, maxSeqLen), /4 examples truncated to \d+ tokens \(at least \d+ tokens cut\)/);
  }
  // A 50 MB line takes no more work than a long example (tokenized whole, it ran V8 out of memory).
  const t0 = performance.now();
  const huge = tokenizeData(tok, [{ kind: "text", line: 1, text: "ab ".repeat(17_000_000) }], 64);
  assert.ok(performance.now() - t0 < 5000, `${performance.now() - t0} ms`);
  assert.deepEqual([huge.truncated, huge.examples[0].inputIds.length], [1, 64]);
});

Deno.test("data: a line over the size limit is refused naming file:line; a UTF-8 BOM at the start is accepted", async () => {
  const over = '{"text": "' + "x".repeat(MAX_LINE_CHARS) + '"}';
  assert.throws(
    () => parseJsonl(`{"text": "ok"}\n${over}\n`, "big.jsonl"),
    /big\.jsonl:2: the line is \d+ characters long, over the limit/,
  );
  const path = await Deno.makeTempFile({ suffix: ".jsonl" });
  await Deno.writeFile(path, new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('{"text": "hi"}\n')]));
  assert.deepEqual((await readJsonl(path)).map((r) => [r.kind, r.line]), [["text", 1]]);
  await Deno.remove(path);
});
