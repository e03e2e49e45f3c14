/**
 * One AdamW step with f32 states on a segment of a parameter, on the GPU (`wgsl/adamw_f32.wgsl`): the kernel of
 * {@linkcode AdamW} (`lib/optim/adamw.ts` lays out the states and pages them). Also the step's scalars, which
 * `adamw_8bit.ts` shares (`wgsl/_adamw_params.wgsl`), and the gradient clipping both apply on the way in (the scale
 * `gradNorm` leaves on the GPU, so no host wait sits between the norm and the update).
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { elementGrid, params } from "./_kernel.ts";

/** The hyperparameters of one AdamW step. */
export interface AdamWStep {
  /** Learning rate. */
  lr: number;
  /** Decay rates of the first and second moments. */
  betas: readonly [number, number];
  /** Added to the denominator. */
  eps: number;
  /** Decoupled weight decay. */
  weightDecay: number;
  /** The step number, from 1 (for the bias correction). */
  t: number;
}

/** `n` elements of a parameter and its gradient, and their state (room for `cap` elements). */
export interface AdamWSegment {
  /** f32 `[n]`, updated in place. */
  param: GPUBufferBinding;
  /** f32 `[n]`. */
  grad: GPUBufferBinding;
  /** The moments, laid out as the kernel's header says. */
  state: GPUBufferBinding;
  /** Elements. */
  n: number;
  /** Elements the state has room for (8-bit: a multiple of 256). */
  cap: number;
  /**
   * f32 `[2]`: (sum of squares of all gradients, clip scale), as `gradNorm` writes it. The gradient is multiplied by
   * the scale; a sum that is not finite skips the step (nothing is written).
   */
  clip: GPUBufferBinding;
}

/**
 * The uniform words of `adamw_f32` and `adamw_8bit` (`Params`): `n`, `cap`, then the step's scalars computed on
 * the host (decay, betas, bias-corrected step size, `1 / sqrt(1 - beta2^t)`, eps, `1 - beta1`, `1 - beta2`).
 *
 * @param step The hyperparameters.
 * @param n Elements of the segment.
 * @param cap Elements its state has room for.
 * @returns The words to bind as uniforms.
 *
 * @example
 * ```ts
 * import { adamwParams } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const u = adamwParams({ lr: 0.5, betas: [0.5, 0.75], eps: 1, weightDecay: 1, t: 1 }, 3, 256);
 * assert.deepEqual([...u.subarray(0, 2)], [3, 256]);
 * assert.deepEqual([...new Float32Array(u.buffer, 16)], [0.5, 0.5, 0.75, 1, 2, 1, 0.5, 0.25]);
 * ```
 */
export function adamwParams(step: AdamWStep, n: number, cap: number): Uint32Array {
  const { lr, betas: [b1, b2], eps, weightDecay, t } = step;
  const scalars = [1 - lr * weightDecay, b1, b2, lr / (1 - b1 ** t), 1 / Math.sqrt(1 - b2 ** t), eps, 1 - b1, 1 - b2];
  return params([n, cap, 0, 0], scalars);
}

/**
 * Records one AdamW step on a segment with f32 states (`state`: `m[0..cap)` then `v[0..cap)`), one invocation per
 * element, gradients clipped by `seg.clip`: elementwise, so segment and page boundaries never change the result.
 *
 * @param gpu The device.
 * @param seg The parameter, gradient and state ranges.
 * @param step The hyperparameters.
 *
 * @example From zero moments, the first step moves each element by about `lr` against its gradient
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { adamwF32 } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const p = Tensor.fromArray(gpu, new Float32Array([1, 1]), [2]);
 * const g = Tensor.fromArray(gpu, new Float32Array([2, -3]), [2]);
 * const state = Tensor.empty(gpu, [4]);
 * const clip = Tensor.fromArray(gpu, new Float32Array([13, 1]), [2]); // sum of squares, scale 1
 * const seg = { param: { buffer: p.buffer }, grad: { buffer: g.buffer }, state: { buffer: state.buffer }, n: 2, cap: 2,
 *   clip: { buffer: clip.buffer } };
 * adamwF32(gpu, seg, { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0, t: 1 });
 * const [a, b] = await p.toFloat32();
 * assert.ok(Math.abs(a - 0.9) < 1e-6 && Math.abs(b - 1.1) < 1e-6);
 * ```
 */
export function adamwF32(gpu: Gpu, seg: AdamWSegment, step: AdamWStep): void {
  gpu.dispatch({
    kernel: "adamw_f32",
    bindings: [seg.param, seg.grad, seg.state, seg.clip, adamwParams(step, seg.n, seg.cap)],
    workgroups: elementGrid(gpu, seg.n, 256),
    bytes: 28 * seg.n + 8, // per element: param read and written, grad read, m and v read and written; the clip pair
  });
}
