/**
 * In-place residual add and gradient accumulation: `acc += alpha * x`.
 *
 * @module
 */

import type { Gpu } from "../../gpu/device.ts";
import type { Tensor } from "../../gpu/tensor.ts";
import { _distinct, _elementGrid, _expect, _fitsBinding, _params } from "./_util.ts";

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
 * import { requestGpu, residualAdd, Tensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const h = Tensor.fromArray(gpu, new Float32Array([1, 2]), [2]);
 * residualAdd(gpu, h, Tensor.fromArray(gpu, new Float32Array([10, 20]), [2]), 0.5);
 * assert.deepEqual([...await h.toFloat32()], [6, 12]);
 * ```
 */
export function residualAdd(gpu: Gpu, acc: Tensor, x: Tensor, alpha = 1): Tensor {
  _expect(acc, "Residual accumulator", acc.size);
  _expect(x, "Residual addend", acc.size);
  _distinct("residualAdd", acc, x);
  _fitsBinding(gpu, acc, "Residual accumulator");
  gpu.dispatch({
    kernel: "residual_add",
    bindings: [acc.buffer, x.buffer, _params([acc.size], [alpha])],
    workgroups: _elementGrid(gpu, acc.size),
  });
  return acc;
}
