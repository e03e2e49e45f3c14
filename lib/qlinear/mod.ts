/**
 * The QLoRA linear layer: `qlinearForward`/`qlinearBackward`/`loraDown` over the kernels, the `QLoRALinear` layer the
 * model is built of (frozen NF4 weight, optional bias, LoRA adapter and its gradients), and the LoRA settings.
 *
 * @example LoRA settings: the scale is alpha/r, or alpha/√r with rsLoRA
 * ```ts
 * import { LORA_TARGETS, resolveLoraConfig } from "@qlora/webgpu/qlinear";
 * import assert from "node:assert/strict";
 * assert.equal(resolveLoraConfig({ r: 4, alpha: 8 }).scale, 2);
 * assert.equal(resolveLoraConfig({ r: 4, alpha: 8, useRslora: true }).scale, 4);
 * assert.equal(LORA_TARGETS.length, 7);
 * ```
 *
 * @module
 */

export * from "./functional.ts";
export * from "./layer.ts";
export * from "./lora_config.ts";
export * from "./qat_bits.ts";
export * from "./qat_linear.ts";
