/**
 * LLM-QAT (Liu et al., 2023): data-free quantization-aware training. The model writes its own training text
 * (`generateQatData`), symmetric MinMax fake quantization of weights (per output channel), activations (per token)
 * and the KV cache (per token) with straight-through gradients (`QatLinear` in the qlinear layer), knowledge distillation from the
 * frozen full-precision teacher (KL over the full vocabulary), the training loop, evaluation (perplexity, KL to a
 * teacher) and export to a Hugging Face folder.
 *
 * @example The qat flags
 * ```ts
 * import { parseQatArgs } from "@qlora/webgpu/qat";
 * import assert from "node:assert/strict";
 * const run = parseQatArgs(["--model", "m", "--data", "gen.jsonl", "--out", "o", "--bits", "w4a8kv4"]);
 * assert.ok(run.kind === "run");
 * assert.equal(run.options.bits, "w4a8kv4");
 * ```
 *
 * @module
 */

export * from "./data.ts";
export * from "./distill.ts";
export * from "./eval.ts";
export * from "./export.ts";
export * from "./options.ts";
export * from "./reference.ts";
export * from "./train.ts";
