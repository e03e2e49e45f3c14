import assert from "node:assert/strict";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { parseLlamaConfig, SafetensorsCheckpoint } from "../mod.ts";
import { bytesToF32 } from "../lib/gpu/mod.ts";
import { readJsonFile } from "../lib/io/mod.ts";
import { TINY_TOKENIZER_SIZE, tinyLlamaConfig, tinyLlamaTensors, writeTinyLlama } from "../lib/testing/mod.ts";

Deno.test("tiny llama: HF folder with Llama tensor names and shapes, written in well under a second", async () => {
  const dir = await Deno.makeTempDir();
  const t0 = performance.now();
  const config = await writeTinyLlama(dir, { seed: 3 });
  const ms = performance.now() - t0;
  console.error(`tiny llama written in ${ms.toFixed(0)} ms`);
  const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  assert.deepEqual(files, [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
  ]);
  assert.deepEqual(await readJsonFile(join(dir, "config.json")), config);
  assert.equal(config.vocab_size, TINY_TOKENIZER_SIZE);
  using ckpt = await SafetensorsCheckpoint.open(dir);
  assert.equal(ckpt.files[0].metadata.format, "pt");
  const shape = (n: string) => ckpt.info(n).shape;
  assert.deepEqual(shape("model.embed_tokens.weight"), [260, 64]);
  assert.deepEqual(shape("model.layers.0.self_attn.q_proj.weight"), [64, 64]);
  assert.deepEqual(shape("model.layers.1.self_attn.k_proj.weight"), [32, 64]); // 2 kv heads × 16
  assert.deepEqual(shape("model.layers.1.self_attn.v_proj.weight"), [32, 64]);
  assert.deepEqual(shape("model.layers.0.self_attn.o_proj.weight"), [64, 64]);
  assert.deepEqual(shape("model.layers.0.mlp.gate_proj.weight"), [172, 64]);
  assert.deepEqual(shape("model.layers.0.mlp.down_proj.weight"), [64, 172]);
  assert.deepEqual(shape("model.layers.1.post_attention_layernorm.weight"), [64]);
  assert.deepEqual(shape("lm_head.weight"), [260, 64]);
  assert.equal(ckpt.names().length, 1 + 2 * 9 + 1 + 1);
  const q = await ckpt.readF32("model.layers.0.self_attn.q_proj.weight");
  const std = Math.sqrt(q.reduce((a, v) => a + v * v, 0) / q.length);
  assert.ok(std > 0.015 && std < 0.025, `q_proj std ${std}`);
});

Deno.test("tiny llama: seeded, options change shapes, bf16 is the rounded f32, tied drops lm_head", () => {
  const a = tinyLlamaTensors({ seed: 5 });
  const b = tinyLlamaTensors({ seed: 5 });
  const c = tinyLlamaTensors({ seed: 6 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a[0].data, c[0].data);
  const bf = tinyLlamaTensors({ seed: 5, dtype: "bf16" });
  const f32 = bytesToF32(a[0].data, "f32");
  const got = bytesToF32(bf[0].data, "bf16");
  for (let i = 0; i < f32.length; i++) assert.ok(Math.abs(got[i] - f32[i]) <= Math.abs(f32[i]) * 2 ** -8);
  const big = tinyLlamaTensors({
    layers: 3,
    hidden: 32,
    heads: 2,
    kvHeads: 1,
    intermediate: 48,
    vocab: 300,
    tied: true,
  });
  const byName = new Map(big.map((t) => [t.name, t]));
  assert.deepEqual(byName.get("model.layers.2.self_attn.k_proj.weight")!.shape, [16, 32]);
  assert.deepEqual(byName.get("model.embed_tokens.weight")!.shape, [300, 32]);
  assert.ok(!byName.has("lm_head.weight"));
  assert.throws(() => tinyLlamaTensors({ heads: 4, kvHeads: 3 }), /kvHeads 3 must divide heads 4/);
  assert.throws(() => tinyLlamaTensors({ vocab: 100 }), /vocab 100 is smaller than the tokenizer/);
});

Deno.test("tiny llama: qkNorm writes a Qwen3 with q_norm/k_norm [headDim] and its stated head_dim", () => {
  const opts = { layers: 2, hidden: 32, heads: 2, kvHeads: 1, headDim: 24, qkNorm: true };
  const config = parseLlamaConfig(tinyLlamaConfig(opts));
  assert.deepEqual([config.architecture, config.headDim, config.qkNorm], ["Qwen3ForCausalLM", 24, true]);
  const byName = new Map(tinyLlamaTensors(opts).map((t) => [t.name, t]));
  assert.deepEqual(byName.get("model.layers.1.self_attn.q_norm.weight")!.shape, [24]);
  assert.deepEqual(byName.get("model.layers.1.self_attn.k_norm.weight")!.shape, [24]);
  assert.deepEqual(byName.get("model.layers.0.self_attn.q_proj.weight")!.shape, [48, 32]);
  assert.deepEqual(byName.get("model.layers.0.self_attn.o_proj.weight")!.shape, [32, 48]);
  assert.equal(byName.size, 1 + 2 * 11 + 1 + 1);
  assert.ok(!tinyLlamaTensors().some((t) => t.name.includes("q_norm")));
  assert.throws(() => tinyLlamaTensors({ headDim: 15 }), /headDim 15 is not a positive even integer/);
});

Deno.test("tiny llama: sharded output has an index naming every tensor", async () => {
  const dir = await Deno.makeTempDir();
  await writeTinyLlama(dir, { shards: 3, dtype: "f16" });
  const index = await readJsonFile(join(dir, "model.safetensors.index.json"));
  const map = index.weight_map as Record<string, string>;
  assert.equal(new Set(Object.values(map)).size, 3);
  using ckpt = await SafetensorsCheckpoint.open(dir);
  assert.equal(ckpt.files.length, 3);
  assert.deepEqual(ckpt.names().sort(), Object.keys(map).sort());
  const total = ckpt.names().reduce((s, n) => s + ckpt.info(n).end - ckpt.info(n).begin, 0);
  assert.equal((index.metadata as { total_size: number }).total_size, total);
});

Deno.test("tiny llama: tokenizer loads in @huggingface/tokenizers, round-trips any text, adds BOS", async () => {
  const dir = await Deno.makeTempDir();
  await writeTinyLlama(dir);
  const tokJson = await readJsonFile(join(dir, "tokenizer.json"));
  const tokConfig = await readJsonFile(join(dir, "tokenizer_config.json"));
  // deno-lint-ignore no-explicit-any
  const tok = new Tokenizer(tokJson as any, tokConfig as any);
  for (const text of ["Hello, world!", "  tabs\tand\nnewlines ", "héllo 日本 🙂", "x</s>y"]) {
    const ids = tok.encode(text).ids;
    assert.equal(ids[0], 1, "BOS first");
    assert.ok(ids.every((id) => id >= 0 && id < TINY_TOKENIZER_SIZE));
    assert.equal(tok.decode(ids, { skip_special_tokens: true }), text.replace("</s>", ""));
  }
  assert.deepEqual(tok.encode("A").ids, [1, 4 + 65]);
  assert.deepEqual(tok.encode("a</s>").ids, [1, 4 + 97, 2], "</s> in text is the EOS token");
  assert.deepEqual(tok.encode("A", { add_special_tokens: false }).ids, [4 + 65]);
  const rendered = new Template(tokConfig.chat_template as string).render({
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hi" },
      { role: "assistant", content: "Hello" },
    ],
    bos_token: "<s>",
    eos_token: "</s>",
    add_generation_prompt: false,
  });
  assert.equal(rendered, "<s><<SYS>>\nBe brief.\n<</SYS>>\n\n[INST] Hi [/INST] Hello</s>");
  const ids = tok.encode(rendered, { add_special_tokens: false }).ids;
  assert.deepEqual([ids[0], ids[ids.length - 1]], [1, 2]);
});
