/**
 * Symmetric MinMax fake quantization of rows on the GPU (`wgsl/fake_quant.wgsl`), the quantizer of LLM-QAT: per
 * output channel for weights, per token for activations and the KV cache. The backward is the straight-through
 * estimator: with MinMax scaling no value falls outside the range, so nothing is clipped and the gradient passes
 * unchanged (see `lib/qlinear/qat_linear.ts`).
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { expectRows, grid, params, rowBinding, rowRanges } from "./_kernel.ts";

/**
 * The largest code of a `bits`-bit symmetric quantizer, `2^(bits−1) − 1` (7 for 4 bits, 127 for 8).
 *
 * @param bits Bits, in [2, 16).
 * @returns `qmax`.
 * @throws {RangeError} Outside [2, 16).
 *
 * @example
 * ```ts
 * import { quantMax } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * assert.equal(quantMax(4), 7);
 * ```
 */
export function quantMax(bits: number): number {
  if (!Number.isInteger(bits) || bits < 2 || bits >= 16) {
    throw new RangeError(`Fake quantization: ${bits} bits is outside [2, 16) (16 means not quantized)`);
  }
  return 2 ** (bits - 1) - 1;
}

/**
 * Fake-quantizes each row of `x` (`cols` values) in place: `scale = max|row| / qmax`, then every value becomes
 * `clamp(round(x / scale), −qmax, qmax) · scale` (round half to even). Recorded on `gpu`.
 *
 * @param gpu The device.
 * @param x f32 tensor of whole rows (modified in place).
 * @param cols Values per row.
 * @param bits Bits of the quantizer, in [2, 16).
 * @returns `x`.
 * @throws {Error} If `x` is not a whole number of rows, naming it.
 *
 * @example Four bits: the row's largest magnitude maps to code ±7
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { fakeQuantRows } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const x = Tensor.fromArray(gpu, new Float32Array([7, 1.4, -3.2, 0]), [1, 4]);
 * assert.deepEqual([...await fakeQuantRows(gpu, x, 4, 4).toFloat32()], [7, 1, -3, 0]);
 * ```
 */
export function fakeQuantRows(gpu: Gpu, x: Tensor, cols: number, bits: number): Tensor {
  const qmax = quantMax(bits);
  const [rows] = expectRows(x, "Fake-quantized tensor", cols);
  for (const [r0, r1] of rowRanges(gpu, rows, [cols * 4], "fake_quant")) {
    gpu.dispatch({
      kernel: "fake_quant",
      bindings: [rowBinding(x, cols * 4, [r0, r1]), params([r1 - r0, cols], [qmax])],
      workgroups: grid(gpu, r1 - r0),
      bytes: 2 * 4 * (r1 - r0) * cols, // the rows read and written in place
    });
  }
  return x;
}
