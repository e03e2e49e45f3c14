/**
 * LLM-QAT (Liu et al., 2023): data-free quantization-aware training. The model writes its own training text
 * (`generateQatData`), symmetric MinMax fake quantization of weights (per output channel), activations (per token)
 * and the KV cache (per token) with straight-through gradients (`QatLinear`), knowledge distillation from the
 * frozen full-precision teacher (KL over the full vocabulary), the training loop, evaluation (perplexity, KL to a
 * teacher) and export to a Hugging Face folder.
 *
 * @example Bits per kind
 * ```ts
 * import { parseQatBits } from "@qlora/webgpu/qat";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseQatBits("w4a8kv4"), { w: 4, a: 8, kv: 4 });
 * ```
 *
 * @module
 */

export * from "./bits.ts";
export * from "./data.ts";
export * from "./distill.ts";
export * from "./eval.ts";
export * from "./export.ts";
export * from "./linear.ts";
export * from "./options.ts";
export * from "./reference.ts";
export * from "./train.ts";
