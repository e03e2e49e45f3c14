/**
 * RMSNorm (Llama's `LlamaRMSNorm`) forward and backward on the GPU (`wgsl/rms_norm.wgsl`), with a frozen weight.
 * Activations past one storage binding are processed in row ranges.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import {
  checkBindingSize,
  distinct,
  expectRows,
  expectSize,
  grid,
  output,
  params,
  rowBinding,
  rowRanges,
  storedFormat,
} from "./_kernel.ts";

/** Result of {@linkcode rmsNormForward}. */
export interface RmsNormForward {
  /** Normalised rows times the weight, shaped like `x`. */
  y: Tensor;
  /** Per-row `1 / sqrt(mean(x²) + eps)`, f32 `[rows]`: keep it for {@linkcode rmsNormBackward}. */
  rstd: Tensor;
}

/**
 * RMSNorm over the last dimension: `y = x / sqrt(mean(x²) + eps) * weight`, in f32.
 *
 * @param gpu The device.
 * @param x Input f32 `[..., H]` (any leading shape; rows are contiguous).
 * @param weight Frozen `[H]`, f32 or as the checkpoint stores it (bf16, f16: read as f32, exactly).
 * @param eps `rms_norm_eps` from the model config.
 * @param out Optional outputs to reuse: `y` (size of `x`) and/or `rstd` (`[rows]`).
 * @returns `y` and the per-row `rstd`.
 *
 * @example
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { rmsNormForward } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const x = Tensor.fromArray(gpu, new Float32Array([3, -4]), [1, 2]);
 * const w = Tensor.fromArray(gpu, new Float32Array([1, 2]), [2]);
 * const { y } = rmsNormForward(gpu, x, w, 0);
 * const got = await y.toFloat32(); // rms = sqrt(12.5)
 * assert.ok(Math.abs(got[1] - -8 / Math.sqrt(12.5)) < 1e-6);
 * ```
 */
export function rmsNormForward(
  gpu: Gpu,
  x: Tensor,
  weight: Tensor,
  eps: number,
  out: Partial<RmsNormForward> = {},
): RmsNormForward {
  const [rows, cols] = expectRows(x, "RMSNorm input", weight.size);
  const fmt = storedFormat(weight, "RMSNorm weight");
  expectSize(weight, "RMSNorm weight", cols, weight.dtype);
  const y = output(gpu, out.y, x.shape, "rmsnorm y");
  const rstd = output(gpu, out.rstd, [rows], "rmsnorm rstd");
  distinct("rmsNormForward", x, y, rstd);
  distinct("rmsNormForward", weight, y, rstd);
  for (const range of _ranges(gpu, weight, rows, "rmsNormForward")) {
    const n = range[1] - range[0];
    const [xr, yr] = [x, y].map((t) => rowBinding(t, cols * 4, range));
    gpu.dispatch({
      kernel: "rms_norm",
      entryPoint: "forward",
      constants: { W_FMT: fmt },
      bindings: [xr, weight.binding, yr, rowBinding(rstd, 4, range), params([n, cols], [eps])],
      workgroups: grid(gpu, n),
      bytes: 4 * (2 * n * cols + n) + weight.byteLength, // x, y, rstd, the weight
    });
  }
  return { y, rstd };
}

/**
 * Gradient of {@linkcode rmsNormForward} with respect to its input (the weight is frozen, so no `dWeight`).
 *
 * @param gpu The device.
 * @param dy Upstream gradient, shaped like `x`.
 * @param x The forward input.
 * @param weight The frozen weight `[H]` (f32, bf16 or f16).
 * @param rstd The forward's per-row `rstd`.
 * @param dx Optional output to reuse (size of `x`; must not be `dy` or `x`).
 * @param options `accumulate`: add the gradient into `dx` (a residual branch's gradient, needs `dx`) instead of
 *   overwriting it, in the same pass.
 * @returns `dx`.
 * @throws {Error} On mismatched sizes, aliasing, or `accumulate` without `dx`, naming the tensor.
 *
 * @example
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { rmsNormBackward, rmsNormForward } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const x = Tensor.fromArray(gpu, new Float32Array([3, -4]), [1, 2]);
 * const w = Tensor.fromArray(gpu, new Float32Array([1, 1]), [2]);
 * const { rstd } = rmsNormForward(gpu, x, w, 0);
 * // With eps = 0 the output ignores the scale of x, so a gradient along x itself vanishes.
 * const dx = await rmsNormBackward(gpu, x, x, w, rstd).toFloat32();
 * assert.ok(Math.abs(dx[0]) < 1e-6 && Math.abs(dx[1]) < 1e-6);
 * // Accumulating adds it to a residual gradient already in dx.
 * const res = Tensor.fromArray(gpu, new Float32Array([1, 2]), [1, 2]);
 * const sum = await rmsNormBackward(gpu, x, x, w, rstd, res, { accumulate: true }).toFloat32();
 * assert.ok(Math.abs(sum[0] - 1) < 1e-6 && Math.abs(sum[1] - 2) < 1e-6);
 * ```
 */
export function rmsNormBackward(
  gpu: Gpu,
  dy: Tensor,
  x: Tensor,
  weight: Tensor,
  rstd: Tensor,
  dx?: Tensor,
  options: { accumulate?: boolean } = {},
): Tensor {
  const accumulate = options.accumulate ?? false;
  if (accumulate && !dx) throw new Error("rmsNormBackward: accumulate needs a dx tensor");
  const [rows, cols] = expectRows(x, "RMSNorm input", weight.size);
  expectSize(dy, "RMSNorm dy", x.size);
  const fmt = storedFormat(weight, "RMSNorm weight");
  expectSize(weight, "RMSNorm weight", cols, weight.dtype);
  expectSize(rstd, "RMSNorm rstd", rows);
  const out = output(gpu, dx, x.shape, "rmsnorm dx");
  for (const t of [dy, x, weight, rstd]) distinct("rmsNormBackward", t, out);
  for (const range of _ranges(gpu, weight, rows, "rmsNormBackward")) {
    const n = range[1] - range[0];
    const [dyr, xr, dxr] = [dy, x, out].map((t) => rowBinding(t, cols * 4, range));
    gpu.dispatch({
      kernel: "rms_norm",
      entryPoint: "backward",
      constants: { W_FMT: fmt },
      bindings: [dyr, xr, weight.binding, rowBinding(rstd, 4, range), dxr, params([n, cols, accumulate ? 1 : 0])],
      workgroups: grid(gpu, n),
      // dy, x, rstd, the weight, dx (read too when added into).
      bytes: 4 * ((accumulate ? 4 : 3) * n * cols + n) + weight.byteLength,
    });
  }
  return out;
}

// Row ranges whose [n, cols] activations and [n] rstd fit one storage binding each (the weight is bound whole).
function _ranges(gpu: Gpu, weight: Tensor, rows: number, op: string): [number, number][] {
  checkBindingSize(gpu, `${op} (the weight "${weight.label}" is bound whole)`, [["the weight", weight.byteLength]]);
  return rowRanges(gpu, rows, [weight.byteLength, 4], op);
}
