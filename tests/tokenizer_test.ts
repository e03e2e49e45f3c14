import assert from "node:assert/strict";
import { loadTokenizer, TextTokenizer } from "../lib/io/tokenizer.ts";
import { CHARS, charTokenizerFiles } from "./_char_tokenizer.ts";

const CHAT = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}" +
  "{% if m.role == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}" +
  "{% if add_generation_prompt %}<assistant>{% endif %}";

Deno.test("tokenizer: post-processor adds BOS, decode round-trips, special ids from tokenizer_config", () => {
  const tok = new TextTokenizer(charTokenizerFiles());
  const ids = tok.encode("ab c=12");
  assert.equal(ids[0], 1);
  assert.equal(ids.length, 8);
  assert.deepEqual(tok.encode("ab", { addSpecialTokens: false }), [4, 5]);
  assert.equal(tok.decode(ids), "<s>ab c=12");
  assert.equal(tok.decode(ids, true), "ab c=12");
  assert.equal(tok.decode([]), "");
  assert.deepEqual([tok.bosId, tok.eosId, tok.padId], [1, 2, 2]);
  assert.deepEqual(tok.stopIds, [2]);
  assert.equal(tok.vocabSize, 3 + CHARS.length);
  assert.equal(tok.chatTemplate, null);
  assert.throws(() => tok.applyChatTemplate([{ role: "user", content: "x" }]), /no chat_template/);
});

Deno.test("tokenizer: no post-processor, no BOS; EOS only from config.json; no Llama fallback", () => {
  const files = charTokenizerFiles({ bos: false, eos: false });
  files.tokenizerConfig = {};
  const none = new TextTokenizer(files);
  assert.deepEqual([none.bosId, none.eosId, none.padId], [null, null, 0]);
  assert.deepEqual(none.stopIds, []);
  assert.deepEqual(none.encode("ab"), [4, 5]);
  const withCfg = new TextTokenizer({ ...files, config: { bos_token_id: 1, eos_token_id: [2, 40] } });
  assert.deepEqual([withCfg.bosId, withCfg.eosId], [1, 2]);
  assert.deepEqual(withCfg.stopIds, [2, 40]);
});

Deno.test("tokenizer: special_tokens_map and AddedToken objects; unknown special token is an error", () => {
  const files = charTokenizerFiles({ eos: false });
  files.tokenizerConfig = {};
  files.specialTokensMap = { eos_token: { content: "</s>", lstrip: false } };
  assert.equal(new TextTokenizer(files).eosId, 2);
  files.specialTokensMap = { eos_token: "<eot>" };
  assert.throws(() => new TextTokenizer(files), /eos_token "<eot>" .* not in its vocabulary/);
});

Deno.test("tokenizer: chat template renders with bos/eos strings and the generation prompt", () => {
  const tok = new TextTokenizer(charTokenizerFiles({ chatTemplate: CHAT }));
  const msgs = [{ role: "user", content: "hi" }, { role: "assistant", content: "yo" }];
  assert.equal(tok.applyChatTemplate(msgs), "<s><user>hi<assistant>yo</s>");
  assert.equal(tok.applyChatTemplate(msgs.slice(0, 1), true), "<s><user>hi<assistant>");
  const ids = tok.encode(tok.applyChatTemplate(msgs), { addSpecialTokens: false });
  assert.equal(ids[0], 1);
  assert.equal(ids.at(-1), 2);
});

Deno.test("tokenizer: loadTokenizer reads a model folder; missing tokenizer.json and bad JSON are named", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(loadTokenizer(dir), /tokenizer\.json: cannot read/);
    const files = charTokenizerFiles();
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(files.tokenizer));
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ eos_token_id: 2 }));
    const tok = await loadTokenizer(dir);
    assert.deepEqual([tok.bosId, tok.eosId], [null, 2]);
    assert.equal(tok.encode("a")[0], 1); // BOS from the post-processor even without a bos_token entry
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, "{");
    await assert.rejects(loadTokenizer(dir), /tokenizer_config\.json: not valid JSON/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
