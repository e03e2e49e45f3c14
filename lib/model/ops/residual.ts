/**
 * In-place residual add and gradient accumulation: `acc += alpha * x`.
 *
 * @module
 */

import type { Gpu } from "../../gpu/device.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { bindingLimit, rowBinding, rowRanges } from "../../kernels/_row_chunks.ts";
import { _distinct, _elementGrid, _expect, _params } from "./_util.ts";

/**
 * Adds `alpha * x` into `acc` in place (the residual stream `h += o`, or summing gradients).
 *
 * @param gpu The device.
 * @param acc f32 tensor updated in place.
 * @param x f32 tensor of the same size (not `acc`).
 * @param alpha Scale of `x` (default 1).
 * @param maxBindingBytes Storage binding limit to split the range by (default and cap: the device's).
 * @returns `acc`.
 *
 * @example
 * ```ts
 * import { requestGpu, residualAdd, Tensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const h = Tensor.fromArray(gpu, new Float32Array([1, 2]), [2]);
 * residualAdd(gpu, h, Tensor.fromArray(gpu, new Float32Array([10, 20]), [2]), 0.5);
 * assert.deepEqual([...await h.toFloat32()], [6, 12]);
 * ```
 */
export function residualAdd(gpu: Gpu, acc: Tensor, x: Tensor, alpha = 1, maxBindingBytes?: number): Tensor {
  _expect(acc, "Residual accumulator", acc.size);
  _expect(x, "Residual addend", acc.size);
  _distinct("residualAdd", acc, x);
  const limit = bindingLimit(gpu, maxBindingBytes);
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  for (const range of rowRanges(acc.size, [4], limit, align, "residualAdd")) {
    const n = range[1] - range[0];
    gpu.dispatch({
      kernel: "residual_add",
      bindings: [rowBinding(acc, 4, range), rowBinding(x, 4, range), _params([n], [alpha])],
      workgroups: _elementGrid(gpu, n),
    });
  }
  return acc;
}
