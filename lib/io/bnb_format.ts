/**
 * The Hugging Face / bitsandbytes 4-bit checkpoint format, at the file level: which safetensors tensors a
 * quantized weight `X.weight` becomes, and the `quantization_config` transformers writes into `config.json`.
 *
 * A weight `X.weight` quantized with `load_in_4bit` is stored as (bitsandbytes' `Linear4bit._save_to_state_dict`,
 * `QuantState.as_dict(packed=True)`):
 * - `X.weight`: the packed codes, U8 `[ceil(n/2), 1]` (with another `bnb_4bit_quant_storage` the same bytes in
 *   that dtype);
 * - `X.weight.absmax`: F32 `[nb]`, or U8 `[nb]` with double quantization;
 * - `X.weight.quant_map`: F32 `[16]`;
 * - with double quantization, `X.weight.nested_absmax` F32 `[ceil(nb/256)]` and `X.weight.nested_quant_map`
 *   F32 `[256]`;
 * - `X.weight.quant_state.bitsandbytes__nf4`: U8, the JSON of the remaining fields (`quant_type`, `blocksize`,
 *   `dtype`, `shape`, and `nested_blocksize`, `nested_dtype`, `nested_offset`).
 *
 * The host side of the conversion (tensors ↔ {@linkcode HostQuantized}) is {@linkcode toBitsandbytes} and
 * {@linkcode fromBitsandbytes}.
 *
 * @module
 */

import { bytesToF32 } from "../dtype.ts";
import { type BnbTensor, fromBitsandbytes, type HostQuantized } from "../quant/quant_state.ts";
import type { SafetensorsCheckpoint } from "./safetensors_checkpoint.ts";
import type { SafetensorsTensorSpec } from "./safetensors_header.ts";
import { LORA_TARGETS } from "../qlinear/lora_config.ts";

/** The decoder linear layers quantized by default (Llama/Mistral/Qwen2/Qwen3 names). */
export const DEFAULT_QUANTIZED_MODULES: readonly string[] = LORA_TARGETS;

const QUANT_STATE_SUFFIX = /\.quant_state\.bitsandbytes__(nf4|fp4)$/;

/**
 * The module name of a weight: the name component before `.weight` (`model.layers.0.mlp.up_proj.weight` →
 * `up_proj`), or `null` for names not ending in `.weight`.
 *
 * @param name Tensor name.
 * @returns The module name component, or `null`.
 *
 * @example
 * ```ts
 * import { moduleNameOf } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * assert.equal(moduleNameOf("model.layers.3.self_attn.q_proj.weight"), "q_proj");
 * assert.equal(moduleNameOf("model.layers.3.self_attn.q_proj.bias"), null);
 * ```
 */
export function moduleNameOf(name: string): string | null {
  const parts = name.split(".");
  return parts.length >= 2 && parts[parts.length - 1] === "weight" ? parts[parts.length - 2] : null;
}

/**
 * The safetensors tensors (name, dtype, shape) a quantized weight is stored as, in the order bitsandbytes
 * lists them, without the `quant_state` JSON tensor (whose length is known only once quantized).
 *
 * @param name The weight's name (`X.weight`).
 * @param shape The original shape.
 * @param blocksize Values per block.
 * @param doubleQuant Whether absmax is double-quantized.
 * @returns The specs: `X.weight`, `.absmax`, `.quant_map`, then `.nested_absmax`, `.nested_quant_map`.
 *
 * @example
 * ```ts
 * import { bnbTensorSpecs } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const specs = bnbTensorSpecs("w.weight", [64, 100], 64, true);
 * assert.deepEqual(specs.map((s) => [s.name, s.dtype, s.shape]), [
 *   ["w.weight", "U8", [3200, 1]],
 *   ["w.weight.absmax", "U8", [100]],
 *   ["w.weight.quant_map", "F32", [16]],
 *   ["w.weight.nested_absmax", "F32", [1]],
 *   ["w.weight.nested_quant_map", "F32", [256]],
 * ]);
 * ```
 */
export function bnbTensorSpecs(
  name: string,
  shape: readonly number[],
  blocksize: number,
  doubleQuant: boolean,
): SafetensorsTensorSpec[] {
  const n = shape.reduce((a, b) => a * b, 1);
  const nb = Math.ceil(n / blocksize);
  const specs: SafetensorsTensorSpec[] = [
    { name, dtype: "U8", shape: [Math.ceil(n / 2), 1] },
    { name: `${name}.absmax`, dtype: doubleQuant ? "U8" : "F32", shape: [nb] },
    { name: `${name}.quant_map`, dtype: "F32", shape: [16] },
  ];
  if (doubleQuant) {
    specs.push(
      { name: `${name}.nested_absmax`, dtype: "F32", shape: [Math.ceil(nb / 256)] },
      { name: `${name}.nested_quant_map`, dtype: "F32", shape: [256] },
    );
  }
  return specs;
}

/**
 * The names of the 4-bit quantized weights in a checkpoint: every `X` with an
 * `X.quant_state.bitsandbytes__nf4` (or `__fp4`) tensor.
 *
 * @param names Tensor names of a checkpoint.
 * @returns Weight names, in the given order.
 *
 * @example
 * ```ts
 * import { bnbQuantizedWeights } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const names = ["a.weight", "a.weight.absmax", "a.weight.quant_state.bitsandbytes__nf4", "b.weight"];
 * assert.deepEqual(bnbQuantizedWeights(names), ["a.weight"]);
 * ```
 */
export function bnbQuantizedWeights(names: readonly string[]): string[] {
  return names.filter((n) => QUANT_STATE_SUFFIX.test(n)).map((n) => n.replace(QUANT_STATE_SUFFIX, ""));
}

const PART_SUFFIX = /\.(absmax|quant_map|nested_absmax|nested_quant_map|quant_state\.bitsandbytes__(nf4|fp4))$/;

/**
 * Names of a checkpoint's plain (not quantized) tensors: everything but the quantized weights and their
 * statistics.
 *
 * @param names Tensor names of a checkpoint.
 * @returns The plain tensor names, in the given order.
 *
 * @example
 * ```ts
 * import { bnbPlainTensors } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const names = ["a.weight", "a.weight.absmax", "a.weight.quant_state.bitsandbytes__nf4", "b.weight"];
 * assert.deepEqual(bnbPlainTensors(names), ["b.weight"]);
 * ```
 */
export function bnbPlainTensors(names: readonly string[]): string[] {
  const weights = new Set(bnbQuantizedWeights(names));
  return names.filter((n) => !weights.has(n) && !weights.has(n.replace(PART_SUFFIX, "")));
}

/**
 * Reads one quantized weight's tensors from a checkpoint into host form. The packed codes may be stored in any
 * dtype (`bnb_4bit_quant_storage`); their bytes are used as they are.
 *
 * @param ckpt The checkpoint.
 * @param name The weight (`X.weight`).
 * @returns Packed codes and state.
 * @throws {Error} Naming the weight and the tensor when one is missing or does not fit.
 */
export async function readBnbWeight(ckpt: SafetensorsCheckpoint, name: string): Promise<HostQuantized> {
  const tensors: Record<string, BnbTensor> = {};
  const suffixes = ["", ".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map"];
  for (const key of ckpt.names()) {
    if (key.startsWith(`${name}.quant_state.`)) suffixes.push(key.slice(name.length));
  }
  for (const suffix of suffixes) {
    const key = name + suffix;
    if (!ckpt.has(key)) continue;
    const info = ckpt.info(key);
    const bytes = await ckpt.read(key);
    if (suffix === "") {
      tensors[suffix] = { dtype: "U8", shape: [bytes.byteLength, 1], data: bytes };
    } else if (info.dtype === "U8" || info.dtype === "F32") {
      tensors[suffix] = {
        dtype: info.dtype,
        shape: info.shape,
        data: info.dtype === "U8" ? bytes : bytesToF32(bytes, "f32"),
      };
    } else {
      throw new Error(`${ckpt.fileOf(key).path}: tensor "${key}" is ${info.dtype}, want U8 or F32`);
    }
  }
  return fromBitsandbytes(tensors, name);
}

/** Options of {@linkcode bnbQuantizationConfig}. */
export interface BnbQuantizationConfigOptions {
  /** Whether absmax is double-quantized (`bnb_4bit_use_double_quant`). */
  doubleQuant: boolean;
  /** `bnb_4bit_compute_dtype` (default `float32`, as transformers). */
  computeDType?: "float32" | "float16" | "bfloat16";
  /** `llm_int8_skip_modules`: modules left unquantized (default `null`: transformers skips `lm_head` itself). */
  skipModules?: readonly string[] | null;
}

/**
 * The `quantization_config` transformers writes into `config.json` for a `load_in_4bit` NF4 model
 * (`BitsAndBytesConfig.to_dict()`, keys sorted as `save_pretrained` writes them).
 *
 * @param opts Double quantization, compute dtype, modules left unquantized.
 * @returns The object to store under `quantization_config`.
 *
 * @example
 * ```ts
 * import { bnbQuantizationConfig } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const q = bnbQuantizationConfig({ doubleQuant: true, computeDType: "bfloat16" });
 * assert.equal(q.quant_method, "bitsandbytes");
 * assert.equal(q.bnb_4bit_quant_type, "nf4");
 * assert.equal(q.load_in_4bit, true);
 * ```
 */
export function bnbQuantizationConfig(opts: BnbQuantizationConfigOptions): Record<string, unknown> {
  return {
    _load_in_4bit: true,
    _load_in_8bit: false,
    bnb_4bit_compute_dtype: opts.computeDType ?? "float32",
    bnb_4bit_quant_storage: "uint8",
    bnb_4bit_quant_type: "nf4",
    bnb_4bit_use_double_quant: opts.doubleQuant,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: opts.skipModules ? [...opts.skipModules] : null,
    llm_int8_threshold: 6.0,
    load_in_4bit: true,
    load_in_8bit: false,
    quant_method: "bitsandbytes",
  };
}
