/**
 * One AdamW step with 8-bit blockwise-quantized states on a segment of a parameter, on the GPU
 * (`wgsl/adamw_8bit.wgsl`, as bitsandbytes' blockwise 8-bit optimizers): the kernel of {@linkcode AdamW8bit}
 * (`lib/optim/adamw.ts` lays out the states and pages them).
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { createDynamicMap } from "../quant/code_tables.ts";
import { elementGrid } from "./_kernel.ts";
import { adamwParams, type AdamWSegment, type AdamWStep } from "./adamw_f32.ts";

/**
 * The code tables of {@linkcode adamw8bit}: the signed dynamic map (for `m`) then the unsigned one (for `v`),
 * 512 f32 in a new buffer accounted as `optimizer` memory.
 *
 * @param gpu The device.
 * @returns The buffer (free it with the optimizer).
 *
 * @example
 * ```ts
 * import { requestGpu } from "@qlora/webgpu";
 * import { adamw8bitCodes } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const codes = await gpu.readF32(adamw8bitCodes(gpu));
 * assert.deepEqual([codes[255], codes[256], codes[511]], [1, 0, 1]); // both sorted, ending at 1
 * ```
 */
export function adamw8bitCodes(gpu: Gpu): GPUBuffer {
  const codes = gpu.createBuffer(512 * 4, "optimizer", "8-bit optimizer code tables");
  gpu.write(codes, new Float32Array([...createDynamicMap(true), ...createDynamicMap(false)]));
  return codes;
}

/**
 * Records one AdamW step on a segment with 8-bit states (`state`: m codes `[cap]` u8, v codes `[cap]` u8, m
 * absmax `[cap/256]` f32, v absmax `[cap/256]` f32; zeros are zero moments), gradients clipped by `seg.clip`, one
 * invocation per 256-element block: the moments are dequantized, updated in f32, used for the parameter and requantized with the block's new
 * absmax.
 *
 * @param gpu The device.
 * @param seg The parameter, gradient and state ranges (`cap` a multiple of 256).
 * @param codes The code tables from {@linkcode adamw8bitCodes}.
 * @param step The hyperparameters.
 *
 * @example From zero moments, the first step moves each element by about `lr` against its gradient
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { adamw8bit, adamw8bitCodes } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const p = Tensor.fromArray(gpu, new Float32Array([1, 1]), [2]);
 * const g = Tensor.fromArray(gpu, new Float32Array([2, -3]), [2]);
 * const state = Tensor.empty(gpu, [256 / 2 + 2]); // two u8 codes per element, two f32 absmax per block
 * const clip = Tensor.fromArray(gpu, new Float32Array([13, 1]), [2]); // sum of squares, scale 1
 * const seg = { param: { buffer: p.buffer }, grad: { buffer: g.buffer }, state: { buffer: state.buffer }, n: 2, cap: 256,
 *   clip: { buffer: clip.buffer } };
 * adamw8bit(gpu, seg, adamw8bitCodes(gpu), { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, t: 1 });
 * const [a, b] = await p.toFloat32();
 * assert.ok(Math.abs(a - 0.9) < 1e-6 && Math.abs(b - 1.1) < 1e-6);
 * ```
 */
export function adamw8bit(gpu: Gpu, seg: AdamWSegment, codes: GPUBuffer, step: AdamWStep): void {
  gpu.dispatch({
    kernel: "adamw_8bit",
    bindings: [seg.param, seg.grad, seg.state, seg.clip, adamwParams(step, seg.n, seg.cap), codes],
    // One invocation per 256-element block, 64 to a workgroup.
    workgroups: elementGrid(gpu, seg.n, 256 * 64),
    // Per element: param read and written, grad read, the m and v codes read and written; per 256-element block
    // the two absmax read and written; the clip pair and the code tables.
    bytes: 16 * seg.n + 16 * Math.ceil(seg.n / 256) + 8 + codes.size,
  });
}
