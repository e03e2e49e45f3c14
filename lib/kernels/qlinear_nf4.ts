/**
 * Matrix products with a 4-bit quantized weight that never materialize `deq(W)` (`wgsl/qlinear_nf4.wgsl`):
 * `X · deq(W)ᵀ + b` (GEMV path for up to 16 rows, tiled GEMM otherwise) and `dY · deq(W)`.
 *
 * One exception to one WGSL file per wrapper: the f16 arithmetic of the tiled kernels lives in
 * `wgsl/qlinear_nf4_f16.wgsl`, because its `enable f16;` directive would make the whole module need `shader-f16`,
 * which many adapters lack. It shares the tiling and dequantization fragments with `qlinear_nf4.wgsl`.
 *
 * @module
 */

import type { Binding, Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";
import {
  checkBindingSize,
  expectF32,
  f32Bits,
  grid,
  matrixTile,
  params,
  quantizedMatrixShape,
  rowBinding,
  rowRanges,
} from "./_kernel.ts";

/** Kernel choice for {@linkcode nf4Linear}: `auto` takes `gemv` for M ≤ 16 rows, `gemm` above. */
export type Nf4LinearPath = "auto" | "gemv" | "gemm";

/** Most rows the GEMV path takes. */
export const GEMV_MAX_ROWS = 16;

/**
 * Arithmetic of the tiled (GEMM) kernels: `f32`, or `f16` (needs `shader-f16`): f16 tiles and multiply-adds
 * over 16-term slices, f32 accumulation across slices; about 1e-3 relative error. The GEMV path is memory-bound
 * and always f32.
 */
export type Nf4Precision = "f32" | "f16";

/** Options of {@linkcode nf4Linear}. */
export interface Nf4LinearOptions {
  /** GEMM arithmetic (default `f32`). */
  precision?: Nf4Precision;
  /** Bias `[N]` f32 added to every row. */
  bias?: Tensor;
  /** Kernel choice (default `auto`). */
  path?: Nf4LinearPath;
  /** Destination `[M, N]` f32 (default: a new activations tensor). */
  out?: Tensor;
}

/** Options of {@linkcode nf4LinearGradInput}. */
export interface Nf4LinearGradInputOptions {
  /** Destination `[M, K]` f32 (default: a new activations tensor). */
  out?: Tensor;
  /** Arithmetic (default `f32`). */
  precision?: Nf4Precision;
}

const _GEMV_ROWS_PER_WORKGROUP = 4; // NR in the kernel

// Flags of the kernel's params (uniform, not overrides: fewer pipeline variants to compile).
const _FLAG_BIAS = 1;
const _FLAG_DOUBLE_QUANT = 2;
const _FLAG_ALIGNED = 4;

function _bindings(
  input: Binding,
  w: QuantizedTensor,
  bias: Tensor | undefined,
  out: Binding,
  dims: [number, number, number],
): Binding[] {
  const flags = (bias ? _FLAG_BIAS : 0) | (w.doubleQuant ? _FLAG_DOUBLE_QUANT : 0) |
    (dims[2] % 8 === 0 ? _FLAG_ALIGNED : 0);
  const u = params([...dims, Math.log2(w.blocksize), f32Bits(w.offset), flags, 0, 0]);
  const biasBuffer = bias?.binding ?? w.code; // placeholder, unread without FLAG_BIAS
  return [input, w.packed, w.absmax, w.absmax2, w.code, w.code2, biasBuffer, out, u];
}

// The weight is bound whole (only the rows of the activations are split).
function _checkWeight(gpu: Gpu, op: string, w: QuantizedTensor): void {
  const what = `${op} (the weight "${w.label}" [${w.shape}] is bound whole; only activation rows are split)`;
  checkBindingSize(gpu, what, [["packed weight", w.packed.size], ["absmax", w.absmax.size]]);
}

function _gemmKernel(gpu: Gpu, precision: Nf4Precision | undefined, op: string): string {
  if (precision !== "f16") return "qlinear_nf4";
  if (!gpu.features.shaderF16) {
    throw new Error(`${op}: f16 precision needs the shader-f16 feature, absent on ${gpu.adapterName}`);
  }
  return "qlinear_nf4_f16";
}

/**
 * `out = x · deq(w)ᵀ (+ bias)` for a quantized weight `w` `[N, K]`, dequantizing tiles in registers and
 * workgroup memory only.
 *
 * @param x Input `[M, K]` f32.
 * @param w Quantized weight `[N, K]`.
 * @param options Bias, kernel path, destination.
 * @returns `[M, N]` f32.
 * @throws {Error} On shape/dtype mismatches (before any dispatch).
 *
 * @example
 * ```ts
 * import { quantizeNF4, requestGpu, Tensor } from "@qlora/webgpu";
 * import { nf4Linear } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const w = await quantizeNF4(gpu, Tensor.fromArray(gpu, new Float32Array(2 * 64).fill(-0.25), [2, 64]));
 * const x = Tensor.fromArray(gpu, new Float32Array(64).fill(2), [1, 64]);
 * assert.deepEqual([...await nf4Linear(x, w).toFloat32()], [-32, -32]);
 * ```
 */
export function nf4Linear(x: Tensor, w: QuantizedTensor, options: Nf4LinearOptions = {}): Tensor {
  const [N, K] = quantizedMatrixShape(w);
  expectF32(x, [-1, K], `nf4Linear: input for weight "${w.label}" [${w.shape}]:`);
  const M = x.shape[0];
  if (options.bias) expectF32(options.bias, [N], "nf4Linear: bias");
  const path = options.path ?? "auto";
  const gemv = path === "gemv" || (path === "auto" && M <= GEMV_MAX_ROWS);
  if (gemv && M > GEMV_MAX_ROWS) throw new Error(`nf4Linear: the gemv path takes at most 16 rows, got ${M}`);
  const gpu = x.gpu;
  const kernel = _gemmKernel(gpu, options.precision, "nf4Linear");
  _checkWeight(gpu, "nf4Linear", w);
  const ranges = rowRanges(gpu, M, [K * 4, N * 4], "nf4Linear");
  const out = options.out ?? Tensor.empty(gpu, [M, N], { label: `${w.label} out`, zero: false }); // written in full
  expectF32(out, [M, N], "nf4Linear: out");
  if (M === 0) return out;
  for (const range of ranges) {
    const m = range[1] - range[0];
    const bindings = _bindings(rowBinding(x, K * 4, range), w, options.bias, rowBinding(out, N * 4, range), [m, N, K]);
    if (gemv) {
      gpu.dispatch({
        kernel: "qlinear_nf4",
        entryPoint: "gemv",
        constants: { MROWS: m === 1 ? 1 : m <= 4 ? 4 : 16 },
        bindings,
        workgroups: grid(gpu, Math.ceil(N / _GEMV_ROWS_PER_WORKGROUP)),
      });
    } else {
      const BM = matrixTile(m);
      gpu.dispatch({
        kernel,
        entryPoint: "gemm",
        constants: { BM },
        bindings,
        workgroups: [Math.ceil(N / 64), Math.ceil(m / BM)],
      });
    }
  }
  return out;
}

/**
 * `out = dy · deq(w)` for a quantized weight `w` `[N, K]`: the input gradient of `x · deq(w)ᵀ`.
 *
 * @param dy Gradient `[M, N]` f32.
 * @param w Quantized weight `[N, K]`.
 * @param options Destination `[M, K]` f32 (default: a new activations tensor), arithmetic.
 * @returns `[M, K]` f32.
 * @throws {Error} On shape/dtype mismatches (before any dispatch).
 *
 * @example
 * ```ts
 * import { quantizeNF4, requestGpu, Tensor } from "@qlora/webgpu";
 * import { nf4LinearGradInput } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const w = await quantizeNF4(gpu, Tensor.fromArray(gpu, new Float32Array(2 * 64).fill(0.5), [2, 64]));
 * const dy = Tensor.fromArray(gpu, new Float32Array([1, 3]), [1, 2]);
 * assert.ok((await nf4LinearGradInput(dy, w).toFloat32()).every((v) => v === 2));
 * ```
 */
export function nf4LinearGradInput(
  dy: Tensor,
  w: QuantizedTensor,
  options: Nf4LinearGradInputOptions = {},
): Tensor {
  const [N, K] = quantizedMatrixShape(w);
  expectF32(dy, [-1, N], `nf4LinearGradInput: output gradient for weight "${w.label}" [${w.shape}]:`);
  const M = dy.shape[0];
  const gpu = dy.gpu;
  const kernel = _gemmKernel(gpu, options.precision, "nf4LinearGradInput");
  _checkWeight(gpu, "nf4LinearGradInput", w);
  const ranges = rowRanges(gpu, M, [N * 4, K * 4], "nf4LinearGradInput");
  const dx = options.out ?? Tensor.empty(gpu, [M, K], { label: `${w.label} dx`, zero: false }); // written in full
  expectF32(dx, [M, K], "nf4LinearGradInput: out");
  if (M === 0) return dx;
  for (const range of ranges) {
    const m = range[1] - range[0];
    const BM = matrixTile(m);
    gpu.dispatch({
      kernel,
      entryPoint: "dx",
      constants: { BM },
      bindings: _bindings(rowBinding(dy, N * 4, range), w, undefined, rowBinding(dx, K * 4, range), [m, N, K]),
      workgroups: [Math.ceil(K / 64), Math.ceil(m / BM)],
    });
  }
  return dx;
}
