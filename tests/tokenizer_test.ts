import assert from "node:assert/strict";
import { loadTokenizer, TextTokenizer } from "../lib/io/tokenizer.ts";
import { ChatTemplate } from "../lib/io/chat_template.ts";
import { TINY_TOKENIZER_SIZE } from "../lib/testing/tiny_tokenizer.ts";
import { tinyFiles } from "./_tiny_files.ts";

const bytes = (s: string) => [...new TextEncoder().encode(s)].map((b) => 4 + b);

Deno.test("tokenizer: post-processor adds BOS, decode round-trips, special ids from tokenizer_config", () => {
  const tok = new TextTokenizer(tinyFiles());
  assert.deepEqual(tok.encode("ab c=é"), [1, ...bytes("ab c=é")]);
  assert.deepEqual(tok.encode("ab", { addSpecialTokens: false }), bytes("ab"));
  assert.equal(tok.decode(tok.encode("ab c=é")), "<s>ab c=é");
  assert.equal(tok.decode(tok.encode("ab c=é"), true), "ab c=é");
  assert.equal(tok.decode([]), "");
  assert.deepEqual([tok.bosId, tok.eosId, tok.padId], [1, 2, 3]);
  assert.deepEqual(tok.stopIds, [2]);
  assert.equal(tok.vocabSize, TINY_TOKENIZER_SIZE);
  assert.ok(tok.chatTemplate !== null);
});

Deno.test("tokenizer: no post-processor, no BOS; EOS only from config.json; no Llama fallback", () => {
  const files = tinyFiles();
  files.tokenizer.post_processor = null;
  files.tokenizerConfig = {};
  files.specialTokensMap = {};
  const none = new TextTokenizer(files);
  assert.deepEqual([none.bosId, none.eosId, none.padId], [null, null, 0]);
  assert.deepEqual(none.stopIds, []);
  assert.deepEqual(none.encode("ab"), bytes("ab"));
  assert.throws(() => none.applyChatTemplate([{ role: "user", content: "x" }]), /no chat_template/);
  const withCfg = new TextTokenizer({ ...files, config: { bos_token_id: 1, eos_token_id: [2, 40] } });
  assert.deepEqual([withCfg.bosId, withCfg.eosId, withCfg.padId], [1, 2, 2]);
  assert.deepEqual(withCfg.stopIds, [2, 40]);
});

Deno.test("tokenizer: special_tokens_map and AddedToken objects; unknown special token is an error", () => {
  const files = tinyFiles();
  files.tokenizerConfig = {};
  files.specialTokensMap = { eos_token: { content: "</s>", lstrip: false } };
  assert.equal(new TextTokenizer(files).eosId, 2);
  files.specialTokensMap = { eos_token: "<eot>" };
  assert.throws(() => new TextTokenizer(files), /eos_token "<eot>" .* not in its vocabulary/);
});

Deno.test("tokenizer: the chat template renders with the bos/eos strings", () => {
  const tok = new TextTokenizer(tinyFiles());
  const msgs = [{ role: "user", content: "hi" }, { role: "assistant", content: "yo" }];
  assert.equal(tok.applyChatTemplate(msgs), "<s>[INST] hi [/INST] yo</s>");
  const ids = tok.encode(tok.applyChatTemplate(msgs), { addSpecialTokens: false });
  assert.deepEqual([ids[0], ids.at(-1)], [1, 2]);
});

Deno.test("tokenizer: loadTokenizer reads a model folder; missing tokenizer.json and bad JSON are named", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(loadTokenizer(dir), /tokenizer\.json: cannot read/);
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(tinyFiles().tokenizer));
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

Deno.test("tokenizer: an unknown model type, a bad eos_token and a broken chat template name their file", () => {
  const files = { ...tinyFiles(), dir: "m" };
  files.tokenizer.model = { ...(files.tokenizer.model as object), type: "Foo" };
  assert.throws(
    () => new TextTokenizer(files),
    /m\/tokenizer\.json: model\.type "Foo" is not supported; supported: BPE/,
  );
  const eos = { ...tinyFiles(), dir: "m" };
  eos.tokenizerConfig!.eos_token = "<eot>";
  assert.throws(() => new TextTokenizer(eos), /m\/tokenizer_config\.json: eos_token "<eot>" is not in its vocabulary/);
  const unclosed = { ...tinyFiles(), dir: "m" };
  unclosed.tokenizerConfig!.chat_template = "{% for m in messages %}{{ m.content }}";
  assert.throws(
    () => new TextTokenizer(unclosed),
    /m\/tokenizer_config\.json: chat_template does not compile: .*not closed/,
  );
  const raises = { ...tinyFiles(), dir: "m" };
  raises.tokenizerConfig!.chat_template = "{{ raise_exception('roles must alternate') }}";
  const tok = new TextTokenizer(raises);
  assert.throws(
    () => tok.applyChatTemplate([{ role: "user", content: "x" }], false, "d.jsonl:4"),
    /m\/tokenizer_config\.json: chat_template failed for d\.jsonl:4: roles must alternate/,
  );
});

Deno.test("chat template: strip/lstrip/rstrip take Python's chars argument", () => {
  const t = new ChatTemplate("{{ x.strip('\\n') }}|{{ x.lstrip(' \\n') }}|{{ x.rstrip() }}|{{ y.strip('xy') }}");
  assert.equal(t.render({ x: "\n  6 (six).  \n", y: "xyhix" }), "  6 (six).  |6 (six).  \n|\n  6 (six).|hi");
});
