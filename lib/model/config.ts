/**
 * The Llama-family model configuration: parsed and validated from a Hugging Face `config.json`.
 *
 * Supported: `LlamaForCausalLM` (Llama 2/3, TinyLlama, SmolLM/SmolLM2), `MistralForCausalLM` without an active
 * sliding window, `Qwen2ForCausalLM` (bias on q/k/v only) and the dense `Qwen3ForCausalLM` (an RMSNorm on each
 * head of q and k before RoPE; `head_dim` given explicitly, not necessarily `hidden_size / num_attention_heads`).
 * Anything the model code does not implement is rejected with an error naming the file, the key and the value,
 * rather than trained wrongly.
 *
 * @module
 */

import { _partialNote } from "../io/_file.ts";
import { storage } from "../platform/storage.ts";

/** RoPE frequency scaling (`rope_scaling` in `config.json`). */
export type RopeScaling =
  | { type: "linear"; factor: number }
  | {
    type: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositionEmbeddings: number;
  };

/** A validated Llama-family configuration (camelCase of the HF keys). */
export interface LlamaConfig {
  /** `architectures[0]`, e.g. `"LlamaForCausalLM"`. */
  architecture: string;
  /** `model_type` (`"llama"`, `"mistral"`, `"qwen2"`, `"qwen3"`), or null when the file has none. */
  modelType: string | null;
  /** `vocab_size`. */
  vocabSize: number;
  /** `hidden_size`. */
  hiddenSize: number;
  /** `intermediate_size` (the SwiGLU width). */
  intermediateSize: number;
  /** `num_hidden_layers`. */
  numLayers: number;
  /** `num_attention_heads`. */
  numHeads: number;
  /** `num_key_value_heads` (GQA; equals `numHeads` when absent). */
  numKvHeads: number;
  /** `head_dim` (default `hiddenSize / numHeads`). */
  headDim: number;
  /** `rms_norm_eps`. */
  rmsNormEps: number;
  /** `rope_theta` (default 10000). */
  ropeTheta: number;
  /** `rope_scaling`, or `null` for plain RoPE. */
  ropeScaling: RopeScaling | null;
  /** `max_position_embeddings`. */
  maxPositionEmbeddings: number;
  /**
   * `tie_word_embeddings`: `lm_head` reuses `embed_tokens`. When the key is absent, transformers' default for the
   * architecture (`false` for all four: `LlamaConfig`, `MistralConfig`, `Qwen2Config` and `Qwen3Config` override
   * `PretrainedConfig`'s `true`), so a checkpoint without `lm_head.weight` needs the key set to `true`.
   */
  tieWordEmbeddings: boolean;
  /** Whether q/k/v projections have a bias (Qwen2). */
  qkvBias: boolean;
  /** Whether each head of q and k is RMS-normalised before RoPE (Qwen3's `q_norm`/`k_norm`, weights `[headDim]`). */
  qkNorm: boolean;
  /** `bos_token_id`, if any. */
  bosTokenId: number | null;
  /** `eos_token_id` (a list when the config has several). */
  eosTokenIds: number[];
  /** `torch_dtype`: how the checkpoint stores its floats (f32 when absent or `"auto"`). */
  torchDtype: StoredFloat;
}

/** Transformers' default `tie_word_embeddings` of each supported architecture's config class. */
const _TIE_DEFAULT: Readonly<Record<string, boolean>> = {
  LlamaForCausalLM: false,
  MistralForCausalLM: false,
  Qwen2ForCausalLM: false,
  Qwen3ForCausalLM: false,
};

/** A float type a checkpoint stores its weights in. */
export type StoredFloat = "f32" | "bf16" | "f16";

const _TORCH_DTYPES: Readonly<Record<string, StoredFloat>> = {
  float32: "f32",
  auto: "f32",
  bfloat16: "bf16",
  float16: "f16",
};

/** Architectures the model code implements. */
export const SUPPORTED_ARCHITECTURES: readonly string[] = Object.keys(_TIE_DEFAULT);

/**
 * Parses and validates a Hugging Face `config.json` object.
 *
 * @param json The parsed JSON.
 * @param file The file it came from, for error messages.
 * @returns The validated configuration.
 * @throws {Error} For a missing or invalid key, an unsupported architecture (naming its `model_type`), activation,
 * bias, RoPE scaling type or an active sliding window; the message names the file, the key and the value.
 *
 * @example
 * ```ts
 * import { parseLlamaConfig } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const cfg = parseLlamaConfig({
 *   architectures: ["LlamaForCausalLM"], vocab_size: 128, hidden_size: 64, intermediate_size: 128,
 *   num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5,
 *   max_position_embeddings: 256, hidden_act: "silu",
 * });
 * assert.equal(cfg.headDim, 16);
 * assert.throws(() => parseLlamaConfig({ architectures: ["GPT2LMHeadModel"] }), /architectures/);
 * ```
 */
export function parseLlamaConfig(json: unknown, file = "config.json"): LlamaConfig {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error(`${file}: expected a JSON object`);
  }
  const c = json as Record<string, unknown>;
  const bad = (key: string, why: string): Error => new Error(`${file}: ${key} = ${JSON.stringify(c[key])}: ${why}`);
  const int = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw bad(key, "expected a positive integer");
    return v;
  };
  const num = (key: string, fallback?: number): number => {
    const v = c[key] ?? fallback;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw bad(key, "expected a positive number");
    return v;
  };

  const archs = c.architectures;
  const architecture = Array.isArray(archs) && typeof archs[0] === "string" ? archs[0] : undefined;
  const modelType = typeof c.model_type === "string" ? c.model_type : null;
  if (!architecture || !SUPPORTED_ARCHITECTURES.includes(architecture)) {
    const type = modelType === null ? "" : ` (model_type ${JSON.stringify(modelType)})`;
    throw bad("architectures", `unsupported${type}; supported: ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  const qwen2 = architecture === "Qwen2ForCausalLM";
  const qwen3 = architecture === "Qwen3ForCausalLM";

  const actKey = c.hidden_act !== undefined ? "hidden_act" : "hidden_activation";
  if ((c[actKey] ?? "silu") !== "silu") throw bad(actKey, 'only "silu" (SwiGLU) is supported');
  if (c.mlp_bias === true) throw bad("mlp_bias", "MLP biases are not supported");
  // Llama's and Qwen3's attention_bias put a bias on o_proj too; only Qwen2's q/k/v-only bias is implemented.
  if (c.attention_bias === true) throw bad("attention_bias", "a bias on o_proj is not supported");

  const hiddenSize = int("hidden_size");
  const numHeads = int("num_attention_heads");
  const numKvHeads = int("num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw bad("num_key_value_heads", `must divide num_attention_heads (${numHeads})`);
  }
  if (c.head_dim === undefined && hiddenSize % numHeads !== 0) {
    throw bad("hidden_size", `not divisible by num_attention_heads (${numHeads}) and no head_dim given`);
  }
  const headDim = int("head_dim", hiddenSize / numHeads);
  if (headDim % 2 !== 0) throw bad("head_dim", "RoPE needs an even head dimension");
  const maxPositionEmbeddings = int("max_position_embeddings", 2048);

  // Qwen2/3 attend over a window only with use_sliding_window; Mistral whenever sliding_window is set.
  const useSliding = qwen2 || qwen3 ? c.use_sliding_window === true : true;
  const sw = c.sliding_window;
  if (useSliding && sw !== undefined && sw !== null) {
    if (typeof sw !== "number" || sw < maxPositionEmbeddings) {
      throw bad(
        "sliding_window",
        `sliding-window attention is not supported (max_position_embeddings is ${maxPositionEmbeddings})`,
      );
    }
  }

  const eos = c.eos_token_id;
  const eosTokenIds = eos === undefined || eos === null ? [] : Array.isArray(eos) ? eos : [eos];
  if (!eosTokenIds.every((e) => Number.isInteger(e) && e >= 0)) throw bad("eos_token_id", "expected token ids");
  const tie = c.tie_word_embeddings ?? _TIE_DEFAULT[architecture];
  if (typeof tie !== "boolean") throw bad("tie_word_embeddings", "expected true or false");
  const bos = c.bos_token_id;
  if (bos !== undefined && bos !== null && !(Number.isInteger(bos) && (bos as number) >= 0)) {
    throw bad("bos_token_id", "expected a token id");
  }

  return {
    architecture,
    modelType,
    vocabSize: int("vocab_size"),
    hiddenSize,
    intermediateSize: int("intermediate_size"),
    numLayers: int("num_hidden_layers"),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num("rms_norm_eps", 1e-6),
    ropeTheta: num("rope_theta", 10000),
    ropeScaling: _ropeScaling(c.rope_scaling, file),
    maxPositionEmbeddings,
    tieWordEmbeddings: tie,
    qkvBias: qwen2,
    qkNorm: qwen3,
    bosTokenId: typeof bos === "number" ? bos : null,
    eosTokenIds: eosTokenIds as number[],
    torchDtype: _torchDtype(c.torch_dtype, file),
  };
}

function _torchDtype(v: unknown, file: string): StoredFloat {
  if (v === undefined || v === null) return "f32";
  const t = _TORCH_DTYPES[String(v)];
  if (!t) throw new Error(`${file}: torch_dtype = ${JSON.stringify(v)}: expected float32, bfloat16 or float16`);
  return t;
}

function _ropeScaling(v: unknown, file: string): RopeScaling | null {
  if (v === undefined || v === null) return null;
  const bad = (key: string, val: unknown, why: string) =>
    new Error(`${file}: rope_scaling.${key} = ${JSON.stringify(val)}: ${why}`);
  if (typeof v !== "object" || Array.isArray(v)) throw new Error(`${file}: rope_scaling: expected an object or null`);
  const s = v as Record<string, unknown>;
  const typeKey = s.rope_type !== undefined ? "rope_type" : "type";
  const type = s[typeKey];
  const pos = (key: string): number => {
    const x = s[key];
    if (typeof x !== "number" || !Number.isFinite(x) || x <= 0) throw bad(key, x, "expected a positive number");
    return x;
  };
  switch (type) {
    case "default":
      return null;
    case "linear":
      return { type: "linear", factor: pos("factor") };
    case "llama3":
      return {
        type: "llama3",
        factor: pos("factor"),
        lowFreqFactor: pos("low_freq_factor"),
        highFreqFactor: pos("high_freq_factor"),
        originalMaxPositionEmbeddings: pos("original_max_position_embeddings"),
      };
    default:
      throw bad(typeKey, type, 'unsupported; supported: "default", "linear", "llama3"');
  }
}

/**
 * Reads and validates `config.json` from a Hugging Face model folder.
 *
 * @param dir The model folder.
 * @returns The validated configuration.
 * @throws {Error} If the file is missing, not JSON, or unsupported (see {@linkcode parseLlamaConfig}).
 *
 * @example
 * ```ts
 * import { loadLlamaConfig } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({
 *   architectures: ["LlamaForCausalLM"], vocab_size: 32, hidden_size: 16, intermediate_size: 32,
 *   num_hidden_layers: 1, num_attention_heads: 2, rms_norm_eps: 1e-5, max_position_embeddings: 64,
 * }));
 * assert.equal((await loadLlamaConfig(dir)).numKvHeads, 2);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadLlamaConfig(dir: string): Promise<LlamaConfig> {
  const file = `${dir}/config.json`;
  let text: string;
  try {
    text = await storage().readTextFile(file);
  } catch (e) {
    throw new Error(`${file}: cannot read the model config: ${(e as Error).message}${await _partialNote(dir)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not valid JSON: ${(e as Error).message}`);
  }
  return parseLlamaConfig(json, file);
}
