/**
 * Writes the inputs of a whole-model golden test (see {@linkcode FIXTURES}): a tiny random model as a safetensors
 * file holding the bf16 checkpoint weights under their Hugging Face names, the same linear weights after NF4 round trip (`dequant.<name>`, from the TypeScript reference
 * dequantizer: what the GPU model computes with), LoRA A/B with a nonzero B, and a right-padded batch.
 * `scripts/golden_reference.py` then computes logits, loss and LoRA gradients from it in PyTorch.
 *
 *     deno run -A scripts/make_model_fixture.ts llama_tiny     # or qwen2_tiny, qwen3_tiny
 *     /usr/bin/python3 scripts/golden_reference.py tests/fixtures/llama_tiny_inputs.safetensors \
 *         tests/fixtures/llama_tiny_golden.safetensors
 *
 * @module
 */

import { f32ToBf16 } from "../lib/dtype.ts";
import type { SafetensorsTensorData } from "../lib/io/safetensors_writer.ts";
import { writeSafetensors } from "../lib/io/safetensors_writer.ts";
import { LORA_TARGETS, loraModulePath, type LoraTarget } from "../lib/qlinear/lora_config.ts";
import { dequantize4bitRef, quantize4bitRef } from "../lib/quant/reference.ts";
import { Rng } from "../lib/random.ts";

/** A golden fixture: the model's `config.json`, its LoRA settings, and the weight seed. */
export interface ModelFixture {
  /** `config.json`. */
  config: Record<string, unknown> & {
    architectures: string[];
    vocab_size: number;
    hidden_size: number;
    intermediate_size: number;
    num_hidden_layers: number;
    num_attention_heads: number;
    num_key_value_heads: number;
    head_dim: number;
    tie_word_embeddings: boolean;
  };
  /** LoRA rank, alpha, rsLoRA, adapted projections. */
  lora: { r: number; alpha: number; useRslora: boolean; targetModules: LoraTarget[] };
  /** Weight seed. */
  seed: number;
}

/**
 * The fixtures: a Llama with llama3 RoPE scaling and LoRA everywhere; a tied Qwen2 with q/k/v bias and LoRA on
 * some; a tied Qwen3 with q/k norms, a head_dim that is not hidden/heads (as Qwen3-0.6B's) and LoRA everywhere.
 */
export const FIXTURES: Record<string, ModelFixture> = {
  llama_tiny: {
    config: {
      architectures: ["LlamaForCausalLM"],
      vocab_size: 96,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 16,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
      rope_scaling: {
        rope_type: "llama3",
        factor: 4,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 16,
      },
      max_position_embeddings: 64,
      hidden_act: "silu",
      tie_word_embeddings: false,
    },
    lora: { r: 4, alpha: 8, useRslora: false, targetModules: [...LORA_TARGETS] },
    seed: 20240601,
  },
  qwen2_tiny: {
    config: {
      architectures: ["Qwen2ForCausalLM"],
      vocab_size: 96,
      hidden_size: 64,
      intermediate_size: 96,
      num_hidden_layers: 1,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      head_dim: 16,
      rms_norm_eps: 1e-6,
      rope_theta: 1000,
      rope_scaling: { type: "linear", factor: 2 },
      max_position_embeddings: 64,
      sliding_window: 32,
      use_sliding_window: false,
      hidden_act: "silu",
      tie_word_embeddings: true,
    },
    lora: { r: 4, alpha: 16, useRslora: true, targetModules: ["q_proj", "v_proj", "down_proj"] },
    seed: 7,
  },
  qwen3_tiny: {
    config: {
      architectures: ["Qwen3ForCausalLM"],
      model_type: "qwen3",
      vocab_size: 96,
      hidden_size: 64,
      intermediate_size: 96,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 32,
      rms_norm_eps: 1e-6,
      rope_theta: 1000000,
      rope_scaling: null,
      max_position_embeddings: 64,
      attention_bias: false,
      sliding_window: null,
      use_sliding_window: false,
      hidden_act: "silu",
      tie_word_embeddings: true,
    },
    lora: { r: 4, alpha: 8, useRslora: false, targetModules: [...LORA_TARGETS] },
    seed: 31,
  },
};

/** The fixture batch: 2 sequences of 8 tokens, the second right-padded to 6. */
export const FIXTURE_BATCH = { batchSize: 2, seqLen: 8, lengths: [8, 6] };

function _projections(c: ModelFixture["config"]): [string, LoraTarget, number, number][] {
  const kv = c.num_key_value_heads * c.head_dim;
  const shapes: Record<string, [number, number]> = {
    q_proj: [c.num_attention_heads * c.head_dim, c.hidden_size],
    k_proj: [kv, c.hidden_size],
    v_proj: [kv, c.hidden_size],
    o_proj: [c.hidden_size, c.num_attention_heads * c.head_dim],
    gate_proj: [c.intermediate_size, c.hidden_size],
    up_proj: [c.intermediate_size, c.hidden_size],
    down_proj: [c.hidden_size, c.intermediate_size],
  };
  const out: [string, LoraTarget, number, number][] = [];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    for (const t of LORA_TARGETS) out.push([loraModulePath(l, t), t, ...shapes[t]]);
  }
  return out;
}

function _bf16(name: string, shape: number[], v: Float32Array): SafetensorsTensorData {
  return { name, dtype: "BF16", shape, data: new Uint8Array(f32ToBf16(v).buffer) };
}

function _f32(name: string, shape: number[], v: Float32Array): SafetensorsTensorData {
  return { name, dtype: "F32", shape, data: new Uint8Array(v.buffer) };
}

/** Rounds to bf16 and back, so the f32 copies equal what a bf16 checkpoint holds. */
function _roundBf16(v: Float32Array): Float32Array {
  return new Float32Array(Uint32Array.from(f32ToBf16(v), (b) => b << 16).buffer);
}

async function main(name: string, path: string): Promise<void> {
  const fx = FIXTURES[name];
  if (!fx) throw new Error(`Unknown fixture "${name}" (${Object.keys(FIXTURES).join(", ")})`);
  const c = fx.config;
  const qkvBias = c.architectures[0] === "Qwen2ForCausalLM";
  const qkNorm = c.architectures[0] === "Qwen3ForCausalLM";
  const rng = new Rng(fx.seed);
  const H = c.hidden_size;
  const tensors: SafetensorsTensorData[] = [];
  // Tied: the table is also lm_head, so keep logits moderate.
  const embedStd = c.tie_word_embeddings ? 0.15 : 1;
  tensors.push(_bf16("model.embed_tokens.weight", [c.vocab_size, H], rng.normalArray(c.vocab_size * H, 0, embedStd)));
  const norm = (n = H, std = 0.1) => _roundBf16(Float32Array.from(rng.normalArray(n), (x) => 1 + std * x));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    tensors.push(_bf16(`model.layers.${l}.input_layernorm.weight`, [H], norm()));
    tensors.push(_bf16(`model.layers.${l}.post_attention_layernorm.weight`, [H], norm()));
    if (!qkNorm) continue;
    // Spread wider than the other norms, so that a q/k norm weight applied to the wrong element shows.
    const D = c.head_dim;
    tensors.push(_bf16(`model.layers.${l}.self_attn.q_norm.weight`, [D], norm(D, 0.3)));
    tensors.push(_bf16(`model.layers.${l}.self_attn.k_norm.weight`, [D], norm(D, 0.3)));
  }
  tensors.push(_bf16("model.norm.weight", [H], norm()));
  if (!c.tie_word_embeddings) {
    tensors.push(_bf16("lm_head.weight", [c.vocab_size, H], rng.normalArray(c.vocab_size * H, 0, 0.1)));
  }
  for (const [name, target, out, inp] of _projections(c)) {
    const w = _roundBf16(rng.normalArray(out * inp, 0, 1 / Math.sqrt(inp)));
    tensors.push(_bf16(`${name}.weight`, [out, inp], w));
    const deq = dequantize4bitRef(quantize4bitRef(w, { blocksize: 64, doubleQuant: true, shape: [out, inp] }));
    tensors.push(_f32(`dequant.${name}.weight`, [out, inp], deq));
    if (qkvBias && ["q_proj", "k_proj", "v_proj"].includes(target)) {
      tensors.push(_bf16(`${name}.bias`, [out], rng.normalArray(out, 0, 0.5)));
    }
    if (!fx.lora.targetModules.includes(target)) continue;
    const r = fx.lora.r;
    const bound = 1 / Math.sqrt(inp);
    tensors.push(_f32(`${name}.lora_A.weight`, [r, inp], rng.uniformArray(r * inp, -bound, bound)));
    tensors.push(_f32(`${name}.lora_B.weight`, [out, r], rng.normalArray(out * r, 0, 0.05)));
  }
  const { batchSize: B, seqLen: T, lengths } = FIXTURE_BATCH;
  const ids = new Int32Array(B * T);
  const labels = new Int32Array(B * T).fill(-100);
  const mask = new Int32Array(B * T);
  for (let s = 0; s < B; s++) {
    for (let t = 0; t < lengths[s]; t++) {
      ids[s * T + t] = rng.int(c.vocab_size);
      mask[s * T + t] = 1;
      // The first two tokens of sequence 0 are a "prompt": no loss on them.
      if (!(s === 0 && t < 2)) labels[s * T + t] = ids[s * T + t];
    }
  }
  tensors.push({ name: "input_ids", dtype: "I32", shape: [B, T], data: new Uint8Array(ids.buffer) });
  tensors.push({ name: "labels", dtype: "I32", shape: [B, T], data: new Uint8Array(labels.buffer) });
  tensors.push({ name: "attention_mask", dtype: "I32", shape: [B, T], data: new Uint8Array(mask.buffer) });
  const { r, alpha, useRslora } = fx.lora;
  const scale = useRslora ? alpha / Math.sqrt(r) : alpha / r;
  await writeSafetensors(path, tensors, { config: JSON.stringify(c), lora_scale: String(scale) });
  console.log(`wrote ${path}`);
}

if (import.meta.main) {
  const name = Deno.args[0] ?? "llama_tiny";
  await main(name, Deno.args[1] ?? `tests/fixtures/${name}_inputs.safetensors`);
}
