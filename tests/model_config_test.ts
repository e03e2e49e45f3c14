import assert from "node:assert/strict";
import { loadLlamaConfig, parseLlamaConfig, resolveLoraConfig } from "../mod.ts";
import { batchLengths, prepareTargets } from "../lib/model/mod.ts";

const BASE = {
  architectures: ["LlamaForCausalLM"],
  vocab_size: 128,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 256,
  hidden_act: "silu",
};

Deno.test("config: Llama, Mistral (no window), Qwen2 (q/k/v bias) and llama3 RoPE scaling parse", () => {
  const l = parseLlamaConfig({ ...BASE, tie_word_embeddings: true, eos_token_id: [1, 2], bos_token_id: 0 });
  assert.equal(l.headDim, 16);
  assert.equal(l.numKvHeads, 2);
  assert.equal(l.tieWordEmbeddings, true);
  assert.deepEqual(l.eosTokenIds, [1, 2]);
  assert.equal(l.qkvBias, false);
  assert.equal(l.ropeTheta, 10000);
  const m = parseLlamaConfig({ ...BASE, architectures: ["MistralForCausalLM"], sliding_window: null });
  assert.equal(m.architecture, "MistralForCausalLM");
  const q = parseLlamaConfig({
    ...BASE,
    architectures: ["Qwen2ForCausalLM"],
    sliding_window: 32,
    use_sliding_window: false,
  });
  assert.equal(q.qkvBias, true);
  const r = parseLlamaConfig({
    ...BASE,
    rope_scaling: {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
  });
  assert.deepEqual(r.ropeScaling, {
    type: "llama3",
    factor: 8,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  });
  assert.deepEqual(parseLlamaConfig({ ...BASE, rope_scaling: { type: "linear", factor: 2 } }).ropeScaling, {
    type: "linear",
    factor: 2,
  });
  assert.equal(parseLlamaConfig({ ...BASE, rope_scaling: { rope_type: "default" } }).ropeScaling, null);
});

// Qwen3-0.6B's published config.json: head_dim 128 is not hidden_size / num_attention_heads (64).
const QWEN3_0_6B = {
  architectures: ["Qwen3ForCausalLM"],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: "silu",
  hidden_size: 1024,
  initializer_range: 0.02,
  intermediate_size: 3072,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  model_type: "qwen3",
  num_attention_heads: 16,
  num_hidden_layers: 28,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  transformers_version: "4.51.0",
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

Deno.test("config: Qwen3 has q/k norms and its explicit head_dim; an explicit head_dim is honoured elsewhere", () => {
  const q = parseLlamaConfig(QWEN3_0_6B);
  assert.equal(q.architecture, "Qwen3ForCausalLM");
  assert.equal(q.headDim, 128);
  assert.equal(q.qkNorm, true);
  assert.equal(q.qkvBias, false);
  assert.equal(q.tieWordEmbeddings, true);
  assert.equal(q.ropeTheta, 1000000);
  assert.deepEqual(q.eosTokenIds, [151645]);
  assert.equal(parseLlamaConfig(BASE).qkNorm, false);
  // Mistral-7B-v0.3 states head_dim (= hidden / heads); a Llama may state one that differs.
  const m = parseLlamaConfig({
    ...BASE,
    architectures: ["MistralForCausalLM"],
    hidden_size: 4096,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    head_dim: 128,
    sliding_window: null,
  });
  assert.equal(m.headDim, 128);
  assert.equal(parseLlamaConfig({ ...BASE, head_dim: 32 }).headDim, 32);
  const bad = (patch: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => parseLlamaConfig({ ...QWEN3_0_6B, ...patch }, "q/config.json"), re);
  bad({ attention_bias: true }, /q\/config.json: attention_bias = true: a bias on o_proj/);
  bad({ use_sliding_window: true, sliding_window: 4096 }, /sliding_window = 4096: sliding-window/);
  bad({ head_dim: 63 }, /head_dim = 63: RoPE needs an even head dimension/);
});

Deno.test("config: unsupported values are clear errors naming file, key and value", () => {
  const f = "m/config.json";
  const bad = (patch: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => parseLlamaConfig({ ...BASE, ...patch }, f), re);
  bad({ architectures: ["GPT2LMHeadModel"] }, /m\/config.json: architectures = \["GPT2LMHeadModel"\]: unsupported/);
  bad({ hidden_act: "gelu" }, /m\/config.json: hidden_act = "gelu": only "silu"/);
  bad({ attention_bias: true }, /attention_bias = true: a bias on o_proj/);
  bad({ mlp_bias: true }, /mlp_bias = true/);
  bad({ rope_scaling: { rope_type: "yarn", factor: 4 } }, /rope_scaling.rope_type = "yarn": unsupported/);
  bad({ rope_scaling: { rope_type: "llama3", factor: 8 } }, /rope_scaling.low_freq_factor = undefined/);
  bad({ architectures: ["MistralForCausalLM"], sliding_window: 128 }, /sliding_window = 128: sliding-window/);
  bad({ architectures: ["Qwen2ForCausalLM"], use_sliding_window: true, sliding_window: 16 }, /sliding_window = 16/);
  bad({ num_key_value_heads: 3 }, /num_key_value_heads = 3: must divide/);
  bad({ hidden_size: 63 }, /hidden_size = 63: not divisible/);
  bad({ vocab_size: 0 }, /vocab_size = 0: expected a positive integer/);
  bad({ hidden_size: "64" }, /hidden_size = "64"/);
});

Deno.test("config: loadLlamaConfig names a missing or broken file", async () => {
  const dir = await Deno.makeTempDir();
  await assert.rejects(loadLlamaConfig(dir), new RegExp(`${dir}/config.json: cannot read`));
  await Deno.writeTextFile(`${dir}/config.json`, "{oops");
  await assert.rejects(loadLlamaConfig(dir), /config.json: not valid JSON/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("batch: labels are shifted, padding and -100 are left out, bad inputs are named", () => {
  const ids = new Int32Array([1, 2, 3, 4, 5, 6, 7, 0]);
  const labels = new Int32Array([-100, 2, 3, 4, 5, 6, 7, 0]);
  const p = prepareTargets({ batchSize: 2, seqLen: 4, inputIds: ids, labels, lengths: [4, 3] }, 8);
  assert.deepEqual([...p.targets], [2, 3, 4, -100, 6, 7, -100, -100]);
  assert.equal(p.tokens, 5);
  const mask = new Uint8Array([1, 1, 1, 1, 1, 0, 1, 0]);
  assert.throws(
    () => batchLengths({ batchSize: 2, seqLen: 4, inputIds: ids, attentionMask: mask }, 8),
    /not right-padded/,
  );
  assert.throws(() => batchLengths({ batchSize: 2, seqLen: 4, inputIds: ids }, 7), /inputIds\[6\] = 7 is outside/);
  assert.throws(
    () => prepareTargets({ batchSize: 1, seqLen: 2, inputIds: new Int32Array(2), labels: new Int32Array([0, 9]) }, 8),
    /labels\[1\] = 9/,
  );
});

Deno.test("lora config: defaults, rsLoRA scale, bad values", () => {
  const d = resolveLoraConfig();
  assert.equal(d.r, 8);
  assert.equal(d.scale, 2);
  assert.equal(d.targetModules.length, 7);
  assert.throws(() => resolveLoraConfig({ r: 0 }), /LoRA r = 0/);
  assert.throws(() => resolveLoraConfig({ dropout: 1 }), /LoRA dropout = 1/);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => resolveLoraConfig({ targetModules: ["qkv" as any] }), /target module "qkv"/);
});

Deno.test("config: tie_word_embeddings follows transformers' default (false) for each architecture when absent", () => {
  for (const arch of ["LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"]) {
    assert.equal(parseLlamaConfig({ ...BASE, architectures: [arch] }).tieWordEmbeddings, false, arch);
    assert.equal(
      parseLlamaConfig({ ...BASE, architectures: [arch], tie_word_embeddings: true }).tieWordEmbeddings,
      true,
    );
  }
  assert.throws(
    () => parseLlamaConfig({ ...BASE, tie_word_embeddings: "true" }, "m/config.json"),
    /m\/config.json: tie_word_embeddings = "true": expected true or false/,
  );
});
