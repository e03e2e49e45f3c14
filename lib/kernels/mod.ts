/**
 * The GPU kernels, one wrapper per WGSL file (matmul, the fused NF4 products, NF4 quantize/dequantize, attention,
 * cross-entropy, embedding, RMSNorm, RoPE, SwiGLU, residual add, the LoRA up projection's backward, AdamW, gradient
 * clipping, the dropout mask), and the code tables' reconstruction error measured with them.
 *
 * @example A residual add on the GPU
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { residualAdd } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const h = Tensor.fromArray(gpu, new Float32Array([1, 2]), [2]);
 * residualAdd(gpu, h, Tensor.fromArray(gpu, new Float32Array([10, 20]), [2]), 0.5);
 * assert.deepEqual([...await h.toFloat32()], [6, 12]);
 * ```
 *
 * @module
 */

export * from "./adamw_8bit.ts";
export * from "./adamw_f32.ts";
export * from "./attention.ts";
export * from "./clip_grad_norm.ts";
export * from "./cross_entropy.ts";
export * from "./dropout.ts";
export * from "./embedding.ts";
export * from "./fake_quant.ts";
export * from "./kl_divergence.ts";
export * from "./lora_up_backward.ts";
export * from "./matmul_f32.ts";
export * from "./nf4_dequantize.ts";
export * from "./nf4_quantize.ts";
export * from "./qlinear_nf4.ts";
export * from "./quant_error.ts";
export * from "./residual_add.ts";
export * from "./rms_norm.ts";
export * from "./rope.ts";
export * from "./swiglu.ts";
