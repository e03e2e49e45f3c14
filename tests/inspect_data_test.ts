import assert from "node:assert/strict";
import { join } from "node:path";
import { TextTokenizer } from "../lib/io/tokenizer.ts";
import { parseJsonl } from "../lib/data/records.ts";
import { tokenizeData } from "../lib/data/examples.ts";
import { examplesJsonl, inspectData, inspectionSummary, showExample } from "../lib/data/inspect.ts";
import { tinyTokenizerFiles } from "../lib/testing/tiny_tokenizer.ts";
import { tinyFiles } from "./_tiny_files.ts";

const DATA = '{"prompt": "ab=", "completion": "ba"}\n' +
  '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n' +
  `{"text": "${"a".repeat(30)}"}\n{"prompt": "${"b".repeat(30)}", "completion": "x"}\n`;

Deno.test("inspect data: counts, marked examples and JSON lines come from the trainer's tokenization", () => {
  const tok = new TextTokenizer(tinyFiles());
  const records = parseJsonl(DATA, "d.jsonl");
  const ins = inspectData(tok, records, 24);
  assert.deepEqual(ins.data, tokenizeData(tok, records, 24));
  assert.equal(ins.records, 4);
  assert.equal(ins.data.examples.length, 3);
  assert.equal(ins.tokens, 7 + 22 + 24);
  assert.equal(ins.trainedTokens, 3 + 3 + 23);
  assert.equal(showExample(tok, ins.data.examples[0], false), "<s>ab=[[ba</s>]]");
  assert.equal(showExample(tok, ins.data.examples[1], false), "<s>[INST] hi [/INST] [[yo</s>]]");
  assert.equal(showExample(tok, ins.data.examples[0], true), "<s>ab=\x1b[7;32mba</s>\x1b[0m");
  const summary = inspectionSummary(ins);
  assert.match(summary, /examples: +3\n/);
  assert.match(summary, /trained tokens: +29 /);
  assert.match(summary, /truncated: +2 \(17 tokens cut, --max-seq-len 24\)/);
  assert.match(summary, /dropped: +1 /);
  const lines = examplesJsonl(ins.data.examples).trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines[0], {
    input_ids: [...ins.data.examples[0].inputIds],
    labels: [...ins.data.examples[0].labels],
  });
  assert.equal(lines[0].labels[0], -100);
});

Deno.test("inspect-data script: shows examples with [[…]] markers, the counts, and writes --json", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const [name, json] of Object.entries(tinyTokenizerFiles())) {
      await Deno.writeTextFile(join(dir, name), JSON.stringify(json));
    }
    await Deno.writeTextFile(join(dir, "d.jsonl"), DATA);
    const script = new URL("../scripts/inspect_data.ts", import.meta.url).pathname;
    const run = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", script, ...args] }).output();
      const text = (b: Uint8Array) => new TextDecoder().decode(b);
      return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
    };
    const out = join(dir, "out.jsonl");
    const ok = await run(
      "--model",
      dir,
      "--data",
      join(dir, "d.jsonl"),
      "--max-seq-len",
      "24",
      "--show",
      "2",
      "--json",
      out,
    );
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /d\.jsonl:1: 7 tokens, 3 trained\n<s>ab=\[\[ba<\/s>\]\]\n/);
    assert.match(ok.stdout, /\[INST\] hi \[\/INST\] \[\[yo<\/s>\]\]/);
    assert.ok(!ok.stdout.includes("aaaa"), "--show 2 shows two examples");
    assert.match(ok.stdout, /examples: +3\n/);
    assert.match(ok.stdout, /dropped: +1/);
    assert.equal((await Deno.readTextFile(out)).trimEnd().split("\n").length, 3);
    assert.match((await run("--help")).stdout, /Usage: deno task inspect-data --model DIR --data FILE/);
    const missing = await run("--data", join(dir, "d.jsonl"));
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /--model is required/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
