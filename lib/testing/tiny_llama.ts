/**
 * A tiny, seeded Llama checkpoint in Hugging Face format: the test fixture and the demo's default model.
 * The folder has `config.json` (`LlamaForCausalLM`, or `Qwen3ForCausalLM` with `qkNorm`), `generation_config.json`,
 * `model.safetensors` (or shards with `model.safetensors.index.json`) with HF tensor names, and the byte-level
 * tokenizer files of {@linkcode tinyTokenizerFiles}. It loads in transformers as is.
 *
 * @module
 */

import { join } from "../platform/path.ts";
import { f32ToBf16 } from "../dtype.ts";
import { Rng } from "../random.ts";
import { writeJsonFile } from "../io/json_file.ts";
import { SAFETENSORS_INDEX_FILE } from "../io/safetensors_checkpoint.ts";
import { type SafetensorsTensorData, writeSafetensors } from "../io/safetensors_writer.ts";
import { TINY_TOKENIZER_SIZE, tinyTokenizerFiles } from "./tiny_tokenizer.ts";
import { storage } from "../platform/storage.ts";

/** Options of the tiny model; every field has a small default. */
export interface TinyLlamaOptions {
  /** Seed of the weights (default 0). */
  seed?: number;
  /** Decoder layers (default 2). */
  layers?: number;
  /** Hidden size (default 64). */
  hidden?: number;
  /** SwiGLU width (default 172, Llama-7B's 11008/4096 ratio). */
  intermediate?: number;
  /** Attention heads (default 4). */
  heads?: number;
  /** Key/value heads, dividing `heads` (default 2: grouped-query attention). */
  kvHeads?: number;
  /** Head dimension, even (default `hidden / heads`; Qwen3 states one that may differ). */
  headDim?: number;
  /** A Qwen3 model: `q_norm`/`k_norm` RMSNorm weights `[headDim]` in every layer (default false: Llama). */
  qkNorm?: boolean;
  /** Embedding rows, at least the tokenizer's 260 (default 260; extra rows are never produced by the tokenizer). */
  vocab?: number;
  /** Stored dtype of the weights (default `f32`). */
  dtype?: "f32" | "bf16" | "f16";
  /** Tie `lm_head` to `embed_tokens` (no `lm_head.weight` tensor; default false). */
  tied?: boolean;
  /** `max_position_embeddings` (default 256). */
  maxPositions?: number;
  /** Split the weights into this many shards with an index file (default 1: `model.safetensors`). */
  shards?: number;
  /**
   * Standard deviation of `lm_head.weight` (default 0.02). A frozen `lm_head` caps the logit range, so a task
   * learnt by LoRA alone (the demo) needs a larger one, e.g. `1/√hidden`.
   */
  lmHeadStd?: number;
}

const TORCH_DTYPE = { f32: "float32", bf16: "bfloat16", f16: "float16" } as const;
const ST_DTYPE = { f32: "F32", bf16: "BF16", f16: "F16" } as const;

/**
 * The `config.json` object of the tiny model.
 *
 * @param opts Model options.
 * @returns A `LlamaForCausalLM` (or, with `qkNorm`, `Qwen3ForCausalLM`) config as transformers writes it.
 *
 * @example
 * ```ts
 * import { tinyLlamaConfig } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const config = tinyLlamaConfig({ layers: 3 });
 * assert.equal(config.num_hidden_layers, 3);
 * assert.equal(config.head_dim, 16);
 * assert.equal(tinyLlamaConfig({ qkNorm: true, headDim: 32 }).model_type, "qwen3");
 * ```
 */
export function tinyLlamaConfig(opts: TinyLlamaOptions = {}): Record<string, unknown> {
  const o = _resolve(opts);
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: o.vocab,
    hidden_size: o.hidden,
    intermediate_size: o.intermediate,
    num_hidden_layers: o.layers,
    num_attention_heads: o.heads,
    num_key_value_heads: o.kvHeads,
    head_dim: o.headDim,
    hidden_act: "silu",
    max_position_embeddings: o.maxPositions,
    initializer_range: 0.02,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    rope_scaling: null,
    attention_bias: false,
    attention_dropout: 0.0,
    mlp_bias: false,
    pretraining_tp: 1,
    tie_word_embeddings: o.tied,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 3,
    torch_dtype: TORCH_DTYPE[o.dtype],
    use_cache: true,
    transformers_version: "4.46.0",
  };
  if (!o.qkNorm) return config;
  // Qwen3 states its (unused) sliding window off.
  const qwen3 = { architectures: ["Qwen3ForCausalLM"], model_type: "qwen3" };
  return { ...config, ...qwen3, use_sliding_window: false, sliding_window: null };
}

/**
 * The tiny model's weights with HF names, sorted by name as safetensors writers order them. Linear and
 * embedding weights are N(0, 0.02²) (transformers' `initializer_range`); RMSNorm weights are 1 + N(0, 0.1²) so
 * that tests notice a norm weight applied wrongly.
 *
 * @param opts Model options.
 * @returns One entry per tensor, data in the chosen dtype.
 *
 * @example
 * ```ts
 * import { tinyLlamaTensors } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const t = tinyLlamaTensors({ tied: true });
 * assert.ok(t.some((x) => x.name === "model.layers.1.self_attn.k_proj.weight"));
 * assert.ok(!t.some((x) => x.name === "lm_head.weight"));
 * ```
 */
export function tinyLlamaTensors(opts: TinyLlamaOptions = {}): SafetensorsTensorData[] {
  const o = _resolve(opts);
  const rng = new Rng(o.seed);
  const hd = o.headDim;
  const shapes: [string, number[], "linear" | "norm"][] = [[
    "model.embed_tokens.weight",
    [o.vocab, o.hidden],
    "linear",
  ]];
  for (let i = 0; i < o.layers; i++) {
    const p = `model.layers.${i}`;
    shapes.push(
      [`${p}.input_layernorm.weight`, [o.hidden], "norm"],
      [`${p}.self_attn.q_proj.weight`, [o.heads * hd, o.hidden], "linear"],
      [`${p}.self_attn.k_proj.weight`, [o.kvHeads * hd, o.hidden], "linear"],
      [`${p}.self_attn.v_proj.weight`, [o.kvHeads * hd, o.hidden], "linear"],
      [`${p}.self_attn.o_proj.weight`, [o.hidden, o.heads * hd], "linear"],
    );
    if (o.qkNorm) {
      shapes.push([`${p}.self_attn.q_norm.weight`, [hd], "norm"], [`${p}.self_attn.k_norm.weight`, [hd], "norm"]);
    }
    shapes.push(
      [`${p}.post_attention_layernorm.weight`, [o.hidden], "norm"],
      [`${p}.mlp.gate_proj.weight`, [o.intermediate, o.hidden], "linear"],
      [`${p}.mlp.up_proj.weight`, [o.intermediate, o.hidden], "linear"],
      [`${p}.mlp.down_proj.weight`, [o.hidden, o.intermediate], "linear"],
    );
  }
  shapes.push(["model.norm.weight", [o.hidden], "norm"]);
  if (!o.tied) shapes.push(["lm_head.weight", [o.vocab, o.hidden], "linear"]);
  // Drawn in model order (so adding a layer keeps the earlier ones), then sorted by name.
  const tensors = shapes.map(([name, shape, kind]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const std = name === "lm_head.weight" ? o.lmHeadStd : 0.02;
    const values = kind === "norm" ? rng.normalArray(n, 1, 0.1) : rng.normalArray(n, 0, std);
    return { name, dtype: ST_DTYPE[o.dtype], shape, data: _encode(values, o.dtype) };
  });
  return tensors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Writes the tiny model's folder (created if missing; existing files of the same names are replaced).
 *
 * @param dir Destination folder.
 * @param opts Model options.
 * @returns The `config.json` object written.
 *
 * @example
 * ```ts
 * import { SafetensorsCheckpoint } from "@qlora/webgpu";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeTinyLlama(dir, { seed: 1, dtype: "bf16" });
 * using ckpt = await SafetensorsCheckpoint.open(dir);
 * assert.equal(ckpt.info("model.norm.weight").dtype, "BF16");
 * ```
 */
export async function writeTinyLlama(dir: string, opts: TinyLlamaOptions = {}): Promise<Record<string, unknown>> {
  const o = _resolve(opts);
  await storage().mkdir(dir, { recursive: true });
  const config = tinyLlamaConfig(o);
  await writeJsonFile(join(dir, "config.json"), config);
  await writeJsonFile(join(dir, "generation_config.json"), {
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: 3,
    transformers_version: config.transformers_version,
  });
  for (const [name, json] of Object.entries(tinyTokenizerFiles(o.maxPositions))) {
    await writeJsonFile(join(dir, name), json);
  }
  const tensors = tinyLlamaTensors(o);
  if (o.shards === 1) {
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
    return config;
  }
  const per = Math.ceil(tensors.length / o.shards);
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < o.shards; s++) {
    const file = `model-${String(s + 1).padStart(5, "0")}-of-${String(o.shards).padStart(5, "0")}.safetensors`;
    const part = tensors.slice(s * per, (s + 1) * per);
    await writeSafetensors(join(dir, file), part);
    for (const t of part) weightMap[t.name] = file;
  }
  const totalSize = tensors.reduce((a, t) => a + t.data.byteLength, 0);
  await writeJsonFile(join(dir, SAFETENSORS_INDEX_FILE), {
    metadata: { total_size: totalSize },
    weight_map: weightMap,
  });
  return config;
}

function _resolve(opts: TinyLlamaOptions): Required<TinyLlamaOptions> {
  const o: Required<TinyLlamaOptions> = {
    seed: 0,
    layers: 2,
    hidden: 64,
    intermediate: 172,
    heads: 4,
    kvHeads: 2,
    headDim: (opts.hidden ?? 64) / (opts.heads ?? 4),
    qkNorm: false,
    vocab: TINY_TOKENIZER_SIZE,
    dtype: "f32",
    tied: false,
    maxPositions: 256,
    shards: 1,
    lmHeadStd: 0.02,
    ...opts,
  };
  const positive = ["layers", "hidden", "intermediate", "heads", "kvHeads", "vocab", "maxPositions", "shards"] as const;
  for (const k of positive) {
    if (!Number.isInteger(o[k]) || o[k] <= 0) throw new Error(`Tiny Llama: ${k} = ${o[k]} is not a positive integer`);
  }
  if (opts.headDim === undefined && (o.hidden % o.heads !== 0 || (o.hidden / o.heads) % 2 !== 0)) {
    throw new Error(`Tiny Llama: hidden ${o.hidden} / heads ${o.heads} must be an even head size`);
  }
  if (!Number.isInteger(o.headDim) || o.headDim <= 0 || o.headDim % 2 !== 0) {
    throw new Error(`Tiny Llama: headDim ${o.headDim} is not a positive even integer`);
  }
  if (o.heads % o.kvHeads !== 0) throw new Error(`Tiny Llama: kvHeads ${o.kvHeads} must divide heads ${o.heads}`);
  if (o.vocab < TINY_TOKENIZER_SIZE) {
    throw new Error(`Tiny Llama: vocab ${o.vocab} is smaller than the tokenizer (${TINY_TOKENIZER_SIZE} tokens)`);
  }
  if (!(o.lmHeadStd > 0)) throw new Error(`Tiny Llama: lmHeadStd ${o.lmHeadStd} must be positive`);
  if (!(o.dtype in ST_DTYPE)) throw new Error(`Tiny Llama: dtype ${o.dtype} is not f32, bf16 or f16`);
  return o;
}

function _encode(values: Float32Array, dtype: "f32" | "bf16" | "f16"): Uint8Array {
  if (dtype === "f32") return new Uint8Array(values.buffer);
  if (dtype === "f16") return new Uint8Array(Float16Array.from(values).buffer);
  return new Uint8Array(f32ToBf16(values).buffer);
}
