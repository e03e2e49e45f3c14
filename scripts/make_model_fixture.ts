/**
 * Writes the inputs of the whole-model golden test: a tiny random Llama (2 layers, hidden 64, 4 heads / 2 KV
 * heads, llama3 RoPE scaling) as a safetensors file holding the bf16 checkpoint weights under their Hugging Face
 * names, the same linear weights after NF4 round trip (`dequant.<name>`, from the TypeScript reference
 * dequantizer: what the GPU model computes with), LoRA A/B with a nonzero B, and a right-padded batch.
 * `scripts/golden_reference.py` then computes logits, loss and LoRA gradients from it in PyTorch.
 *
 *     deno run -A scripts/make_model_fixture.ts tests/fixtures/llama_tiny_inputs.safetensors
 *     /usr/bin/python3 scripts/golden_reference.py tests/fixtures/llama_tiny_inputs.safetensors \
 *         tests/fixtures/llama_tiny_golden.safetensors
 *
 * @module
 */

import { f32ToBf16 } from "../lib/dtype.ts";
import type { SafetensorsTensorData } from "../lib/io/safetensors_writer.ts";
import { writeSafetensors } from "../lib/io/safetensors_writer.ts";
import { LORA_TARGETS, loraModulePath } from "../lib/model/lora_config.ts";
import { dequantize4bitRef, quantize4bitRef } from "../lib/quant/reference.ts";
import { Rng } from "../lib/random.ts";

/** The fixture model's `config.json`. */
export const FIXTURE_CONFIG = {
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
};

/** LoRA settings of the fixture (all seven projections). */
export const FIXTURE_LORA = { r: 4, alpha: 8 };

/** The fixture batch: 2 sequences of 8 tokens, the second right-padded to 6. */
export const FIXTURE_BATCH = { batchSize: 2, seqLen: 8, lengths: [8, 6] };

function _projections(): [string, number, number][] {
  const c = FIXTURE_CONFIG;
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
  const out: [string, number, number][] = [];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    for (const t of LORA_TARGETS) {
      out.push([loraModulePath(l, t), ...shapes[t]]);
    }
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

async function main(path: string): Promise<void> {
  const c = FIXTURE_CONFIG;
  const rng = new Rng(20240601);
  const H = c.hidden_size;
  const tensors: SafetensorsTensorData[] = [];
  tensors.push(_bf16("model.embed_tokens.weight", [c.vocab_size, H], rng.normalArray(c.vocab_size * H)));
  const norm = () => _roundBf16(Float32Array.from(rng.normalArray(H), (x) => 1 + 0.1 * x));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    tensors.push(_bf16(`model.layers.${l}.input_layernorm.weight`, [H], norm()));
    tensors.push(_bf16(`model.layers.${l}.post_attention_layernorm.weight`, [H], norm()));
  }
  tensors.push(_bf16("model.norm.weight", [H], norm()));
  tensors.push(_bf16("lm_head.weight", [c.vocab_size, H], rng.normalArray(c.vocab_size * H, 0, 0.1)));
  for (const [name, out, inp] of _projections()) {
    const w = _roundBf16(rng.normalArray(out * inp, 0, 1 / Math.sqrt(inp)));
    tensors.push(_bf16(`${name}.weight`, [out, inp], w));
    const deq = dequantize4bitRef(quantize4bitRef(w, { blocksize: 64, doubleQuant: true, shape: [out, inp] }));
    tensors.push(_f32(`dequant.${name}.weight`, [out, inp], deq));
    const r = FIXTURE_LORA.r;
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
  const scale = FIXTURE_LORA.alpha / FIXTURE_LORA.r;
  await writeSafetensors(path, tensors, { config: JSON.stringify(c), lora_scale: String(scale) });
  console.log(`wrote ${path}`);
}

if (import.meta.main) await main(Deno.args[0] ?? "tests/fixtures/llama_tiny_inputs.safetensors");
