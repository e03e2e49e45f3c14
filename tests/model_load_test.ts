// Loading (bf16 sharded + tied, bitsandbytes 4-bit folders), LoRA target options, and KV-cached generation
// checked against the full forward.
import assert from "node:assert/strict";
import { LlamaModel, quantizeFolder, readPeftAdapter, requestGpu, writePeftAdapter } from "../mod.ts";
import { loraToPeftConfig, peftToLoraConfig } from "../lib/io/mod.ts";
import { type TinyLlamaOptions, writeTinyLlama } from "../lib/testing/mod.ts";
import { relError } from "./_assert.ts";
import { writeTinyWith } from "./_tiny_poisoned.ts";

const gpu = await requestGpu();

async function tinyDir(opts: Parameters<typeof writeTinyLlama>[1]): Promise<string> {
  const dir = await Deno.makeTempDir();
  await writeTinyLlama(dir, opts);
  return dir;
}

/** Logits of rows `rows` of a `[N, V]` tensor. */
async function rowsOf(model: LlamaModel, ids: Int32Array, B: number, T: number, lengths?: number[]) {
  const { logits } = await model.forward({ batchSize: B, seqLen: T, inputIds: ids, lengths }, { logits: true });
  const all = await logits!.toFloat32();
  logits!.destroy();
  return all;
}

Deno.test("model load: sharded bf16 with tied embeddings; KV-cache prefill + decode equal the full forward", async () => {
  const dir = await tinyDir({ layers: 2, dtype: "bf16", tied: true, shards: 2, seed: 5 });
  const model = await LlamaModel.load(gpu, dir, { lora: { r: 4, seed: 1 } });
  const V = model.config.vocabSize;
  assert.equal(model.config.tieWordEmbeddings, true);
  // Nonzero B so the adapters take part in generation.
  for (const l of model.loraLayers()) l.b.write(new Float32Array(l.b.size).map((_, i) => Math.sin(i) * 0.05));
  const seq = new Int32Array([3, 17, 42, 99, 7, 250, 64, 12]);
  const full = await rowsOf(model, seq, 1, 8);

  const cache = model.createKvCache(2, 12);
  // Sequence 0: the 5-token prompt; sequence 1: a 3-token prompt, right-padded.
  const prompt = new Int32Array([...seq.subarray(0, 5), ...seq.subarray(0, 3), 0, 0]);
  let logits = await model.prefill(cache, { batchSize: 2, seqLen: 5, inputIds: prompt, lengths: [5, 3] });
  assert.deepEqual(cache.lengths, [5, 3]);
  assert.ok(relError(logits.subarray(0, V), full.subarray(4 * V, 5 * V)) < 1e-5, "prefill, sequence 0");
  assert.ok(relError(logits.subarray(V), full.subarray(2 * V, 3 * V)) < 1e-5, "prefill, sequence 1");
  for (let step = 0; step < 3; step++) {
    logits = await model.decodeStep(cache, new Int32Array([seq[5 + step], seq[3 + step]]));
    assert.ok(relError(logits.subarray(0, V), full.subarray((5 + step) * V, (6 + step) * V)) < 1e-5, `decode ${step}`);
    assert.ok(relError(logits.subarray(V), full.subarray((3 + step) * V, (4 + step) * V)) < 1e-5, `decode ${step}, 1`);
  }
  assert.deepEqual(cache.lengths, [8, 6]);
  await assert.rejects(model.decodeStep(cache, new Int32Array([1])), /KV cache holds 2 sequences, got 1/);
  cache.destroy();
  model.destroy();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("model load: a bitsandbytes 4-bit folder gives the logits of quantizing on load", async () => {
  const dir = await tinyDir({ layers: 1, seed: 9 });
  const out = await Deno.makeTempDir();
  await Deno.remove(out);
  await quantizeFolder(gpu, { input: dir, output: out });
  const ids = new Int32Array([1, 2, 3, 4, 5, 6]);
  const a = await LlamaModel.load(gpu, dir, { lora: null });
  const b = await LlamaModel.load(gpu, out, { lora: null });
  const la = await rowsOf(a, ids, 2, 3);
  const lb = await rowsOf(b, ids, 2, 3);
  assert.ok(relError(lb, la) < 1e-6);
  assert.deepEqual(a.loraLayers(), []);
  await assert.rejects(a.forwardBackward({ batchSize: 2, seqLen: 3, inputIds: ids, labels: ids }), /without LoRA/);
  a.destroy();
  b.destroy();
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(out, { recursive: true });
});

Deno.test("model load: f16 checkpoint; LoRA targets, rsLoRA scale, PEFT init; missing tensors and bad configs are named", async () => {
  const dir = await tinyDir({ layers: 2, dtype: "f16" });
  const model = await LlamaModel.load(gpu, dir, {
    lora: { r: 4, alpha: 8, targetModules: ["q_proj", "v_proj"], useRslora: true },
  });
  const paths = model.loraLayers().map((l) => l.path);
  assert.deepEqual(paths, [
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.v_proj",
    "model.layers.1.self_attn.q_proj",
    "model.layers.1.self_attn.v_proj",
  ]);
  const q = model.loraLayer(paths[0]);
  assert.equal(q.scale, 4);
  assert.deepEqual(q.a.shape, [4, 64]);
  const a = await q.a.toFloat32();
  assert.ok(a.every((x) => Math.abs(x) <= 1 / 8) && a.some((x) => x !== 0), "A: kaiming-uniform in ±1/√K");
  assert.ok((await q.b.toFloat32()).every((x) => x === 0), "B: zeros");
  assert.equal(model.linearLayers().length, 14);
  model.destroy();

  const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...config, hidden_act: "gelu" }));
  await assert.rejects(LlamaModel.load(gpu, dir), /config.json: hidden_act = "gelu"/);
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...config, num_hidden_layers: 3 }));
  await assert.rejects(LlamaModel.load(gpu, dir), /tensor "model.layers.2.input_layernorm.weight" is missing/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("model load: f16 NF4 products are refused without shader-f16", async () => {
  const dir = await tinyDir({ layers: 1, seed: 3 });
  const off = await requestGpu({ disableFeatures: ["shaderF16"] });
  await assert.rejects(LlamaModel.load(off, dir, { precision: "f16" }), /shader-f16/);
  off.destroy();
  await Deno.remove(dir, { recursive: true });
});

Deno.test({ name: "model load: f16 NF4 products stay close to f32", ignore: !gpu.features.shaderF16 }, async () => {
  const dir = await tinyDir({ layers: 1, seed: 3 });
  // 32 rows: past the GEMV path (≤ 16 rows), so the tiled f16 products run.
  const ids = Int32Array.from({ length: 32 }, (_, i) => (i * 7 + 3) % 200);
  const batch = { batchSize: 2, seqLen: 16, inputIds: ids, labels: ids };
  const results = [];
  for (const precision of ["f32", "f16"] as const) {
    const m = await LlamaModel.load(gpu, dir, { precision, lora: { r: 4, seed: 2 } });
    for (const l of m.loraLayers()) l.b.write(new Float32Array(l.b.size).fill(0.01));
    const logits = await rowsOf(m, ids, 2, 16);
    await m.forwardBackward(batch);
    results.push({ logits, grad: await m.loraLayers()[0].gradA.toFloat32() });
    m.destroy();
  }
  assert.ok(relError(results[1].logits, results[0].logits) < 5e-3, "logits");
  assert.ok(relError(results[1].grad, results[0].grad) < 2e-2, "q_proj dA");
  await Deno.remove(dir, { recursive: true });
});

Deno.test("model load: a PEFT adapter saved from loraWeights and set with setLoraWeights gives the same logits", async () => {
  const dir = await tinyDir({ layers: 1, seed: 4 });
  const m1 = await LlamaModel.load(gpu, dir, { lora: { r: 4, alpha: 8, targetModules: ["q_proj", "down_proj"] } });
  for (const l of m1.loraLayers()) l.b.write(new Float32Array(l.b.size).map((_, i) => Math.cos(i) * 0.1));
  const ids = new Int32Array([9, 8, 7, 6, 5, 4]);
  const want = await rowsOf(m1, ids, 1, 6);
  const out = await Deno.makeTempDir();
  await writePeftAdapter(out, { config: loraToPeftConfig(m1.lora!, null), modules: await m1.loraWeights() });
  const adapter = await readPeftAdapter(out, new Map(m1.loraLayers().map((l) => [l.path, l])));
  const m2 = await LlamaModel.load(gpu, dir, { lora: peftToLoraConfig(adapter.config) });
  for (const [path, w] of adapter.modules) m2.setLoraWeights(path, w.a, w.b);
  assert.deepEqual([...await rowsOf(m2, ids, 1, 6)], [...want]);
  const [path, w] = [...adapter.modules][0];
  assert.throws(() => m2.setLoraWeights(path, new Float32Array(3), w.b), /LoRA A has 3 values and B 256/);
  m1.destroy();
  m2.destroy();
  await Deno.remove(dir, { recursive: true });
  await Deno.remove(out, { recursive: true });
});

Deno.test("model load: an untied model without lm_head and layers past num_hidden_layers are refused", async () => {
  const dir = await tinyDir({ layers: 2, tied: true });
  const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  const missing = /tensor "lm_head\.weight" is missing and tie_word_embeddings is false/;
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...config, tie_word_embeddings: false }));
  await assert.rejects(LlamaModel.load(gpu, dir, { lora: null }), missing);
  delete config.tie_word_embeddings; // transformers' LlamaConfig default: false
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  await assert.rejects(LlamaModel.load(gpu, dir, { lora: null }), missing);
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({ ...config, tie_word_embeddings: true, num_hidden_layers: 1 }),
  );
  await assert.rejects(
    LlamaModel.load(gpu, dir, { lora: null }),
    /tensor "model\.layers\.1\.input_layernorm\.weight" is past num_hidden_layers = 1/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("model load: NaN/Inf in a norm, the embeddings or lm_head is named with its first bad index", async () => {
  const dir = await Deno.makeTempDir();
  const cases: [TinyLlamaOptions, string, number, number, RegExp][] = [
    [{ layers: 1 }, "model.norm.weight", 5, NaN, /model\.norm\.weight": NaN at index 5 is not finite/],
    [
      { layers: 1 },
      "model.layers.0.post_attention_layernorm.weight",
      0,
      Infinity,
      /post_attention_layernorm.*Infinity at index 0/,
    ],
    [
      { layers: 1, dtype: "bf16", tied: true },
      "model.embed_tokens.weight",
      300,
      -Infinity,
      /embed_tokens\.weight": -Infinity at index 300/,
    ],
    [{ layers: 1, dtype: "f16" }, "lm_head.weight", 64 * 7 + 3, NaN, /lm_head\.weight": NaN at index 451/],
    [
      { layers: 1, qkNorm: true, headDim: 32, tied: true },
      "model.layers.0.self_attn.k_norm.weight",
      31,
      NaN,
      /k_norm.*NaN at index 31/,
    ],
  ];
  for (const [opts, name, index, value, re] of cases) {
    await writeTinyWith(dir, opts, name, index, value);
    await assert.rejects(LlamaModel.load(gpu, dir, { lora: null }), re, name);
  }
  // Projections are checked by the NF4 quantizer on the GPU.
  await writeTinyWith(dir, { layers: 1 }, "model.layers.0.mlp.up_proj.weight", 77, NaN);
  await assert.rejects(LlamaModel.load(gpu, dir, { lora: null }), /up_proj\.weight.*NaN at index 77/);
  await Deno.remove(dir, { recursive: true });
});
