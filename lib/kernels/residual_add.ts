/**
 * In-place residual add and gradient accumulation on the GPU (`wgsl/residual_add.wgsl`): `acc += alpha * x`,
 * in element ranges past one storage binding.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { distinct, elementGrid, expectSize, params, rowBinding, rowRanges } from "./_kernel.ts";

/**
 * Adds `alpha * x` into `acc` in place (the residual stream `h += o`, or summing gradients).
 *
 * @param gpu The device.
 * @param acc f32 tensor updated in place.
 * @param x f32 tensor of the same size (not `acc`).
 * @param alpha Scale of `x` (default 1).
 * @returns `acc`.
 *
 * @example
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { residualAdd } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const h = Tensor.fromArray(gpu, new Float32Array([1, 2]), [2]);
 * residualAdd(gpu, h, Tensor.fromArray(gpu, new Float32Array([10, 20]), [2]), 0.5);
 * assert.deepEqual([...await h.toFloat32()], [6, 12]);
 * ```
 */
export function residualAdd(gpu: Gpu, acc: Tensor, x: Tensor, alpha = 1): Tensor {
  expectSize(acc, "Residual accumulator", acc.size);
  expectSize(x, "Residual addend", acc.size);
  distinct("residualAdd", acc, x);
  for (const range of rowRanges(gpu, acc.size, [4], "residualAdd")) {
    const n = range[1] - range[0];
    gpu.dispatch({
      kernel: "residual_add",
      bindings: [rowBinding(acc, 4, range), rowBinding(x, 4, range), params([n], [alpha])],
      workgroups: elementGrid(gpu, n),
      bytes: 3 * 4 * n, // acc read and written, x read
    });
  }
  return acc;
}
