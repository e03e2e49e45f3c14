import assert from "node:assert/strict";
import { exactMatchAccuracy } from "../lib/data/eval.ts";
import { readJsonl } from "../lib/data/records.ts";

Deno.test("eval: exact match, async completions, every output kept", async () => {
  const pairs = [{ prompt: "ab=", completion: "ba" }, { prompt: "cd=", completion: "dc" }, {
    prompt: "e=",
    completion: "e",
  }];
  const r = await exactMatchAccuracy(pairs, async (p) => {
    await Promise.resolve();
    return p === "cd=" ? "dc " : [...p.slice(0, -1)].reverse().join("");
  });
  assert.deepEqual([r.correct, r.total], [2, 3]);
  assert.equal(r.accuracy, 2 / 3);
  assert.deepEqual(r.outputs[1], { prompt: "cd=", expected: "dc", output: "dc ", correct: false });
  await assert.rejects(exactMatchAccuracy([], () => ""), /no prompt\/completion pairs/);
});

Deno.test("eval: the shipped reversal task is well-formed, correct, and its splits are disjoint", async () => {
  const train = await readJsonl(new URL("../data/reverse_train.jsonl", import.meta.url).pathname);
  const test = await readJsonl(new URL("../data/reverse_test.jsonl", import.meta.url).pathname);
  assert.deepEqual([train.length, test.length], [2000, 200]);
  const seen = new Set<string>();
  for (const r of [...train, ...test]) {
    assert.equal(r.kind, "prompt");
    if (r.kind !== "prompt") continue;
    assert.match(r.prompt, /^[a-z]{3}=$/);
    assert.equal(r.completion, [...r.prompt.slice(0, -1)].reverse().join(""));
    assert.ok(!seen.has(r.prompt), `${r.prompt} appears twice`);
    seen.add(r.prompt);
  }
});
