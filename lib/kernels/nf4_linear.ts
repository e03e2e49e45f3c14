/**
 * Matrix products with a 4-bit quantized weight that never materialize `deq(W)` (`wgsl/qlinear_nf4.wgsl`):
 * `X · deq(W)ᵀ + b` (GEMV path for up to 16 rows, tiled GEMM otherwise) and `dY · deq(W)`.
 *
 * @module
 */

import { type Binding, grid2d } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";

/** Kernel choice for {@linkcode nf4Linear}: `auto` takes `gemv` for M ≤ 16 rows, `gemm` above. */
export type Nf4LinearPath = "auto" | "gemv" | "gemm";

/** Most rows the GEMV path takes. */
export const GEMV_MAX_ROWS = 16;

/** Options of {@linkcode nf4Linear}. */
export interface Nf4LinearOptions {
  /** Bias `[N]` f32 added to every row. */
  bias?: Tensor;
  /** Kernel choice (default `auto`). */
  path?: Nf4LinearPath;
  /** Destination `[M, N]` f32 (default: a new activations tensor). */
  out?: Tensor;
}

const _GEMV_ROWS_PER_WORKGROUP = 4; // NR in the kernel

/**
 * Checks a quantized weight is a 2-D `[N, K]` matrix.
 *
 * @param w The weight.
 * @returns `[N, K]`.
 * @throws {Error} Naming the weight and its shape.
 */
export function quantizedMatrixShape(w: QuantizedTensor): [number, number] {
  if (w.shape.length !== 2) throw new Error(`Quantized weight "${w.label}" must be 2-D [N, K], got [${w.shape}]`);
  return [w.shape[0], w.shape[1]];
}

/**
 * Checks a tensor is f32 with the given shape (`-1` matches any size).
 *
 * @param t The tensor.
 * @param shape Expected dimensions.
 * @param what Names the operand in the error.
 * @throws {Error} Naming the operand, its label, its shape and dtype, and the expected shape.
 */
export function expectF32(t: Tensor, shape: readonly number[], what: string): void {
  const ok = t.dtype === "f32" && t.shape.length === shape.length && shape.every((d, i) => d < 0 || d === t.shape[i]);
  if (!ok) {
    const want = shape.map((d) => (d < 0 ? "*" : d)).join(",");
    throw new Error(`${what} "${t.label}" is [${t.shape}] ${t.dtype}, expected [${want}] f32`);
  }
}

function _bindings(
  input: Tensor,
  w: QuantizedTensor,
  bias: Tensor | undefined,
  out: Tensor,
  dims: [number, number, number],
): Binding[] {
  const u = new Uint32Array(8);
  u.set([...dims, w.blocksize]);
  new Float32Array(u.buffer)[4] = w.offset;
  const biasBuffer = bias?.buffer ?? w.code; // placeholder, unread without HAS_BIAS
  return [input.buffer, w.packed, w.absmax, w.absmax2, w.code, w.code2, biasBuffer, out.buffer, u];
}

function _constants(w: QuantizedTensor, K: number): Record<string, number> {
  return { DOUBLE_QUANT: w.doubleQuant ? 1 : 0, ALIGNED: K % 8 === 0 ? 1 : 0 };
}

function _tile(n: number): number {
  return n <= 16 ? 16 : n <= 32 ? 32 : 64;
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
 * @example Compared with dequantize-then-multiply in the tests; here a shape check
 * ```ts
 * import { nf4Linear } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * assert.equal(typeof nf4Linear, "function");
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
  const out = options.out ?? Tensor.empty(gpu, [M, N], { label: `${w.label} out` });
  expectF32(out, [M, N], "nf4Linear: out");
  if (M === 0) return out;
  const constants = { ..._constants(w, K), HAS_BIAS: options.bias ? 1 : 0 };
  const bindings = _bindings(x, w, options.bias, out, [M, N, K]);
  if (gemv) {
    gpu.dispatch({
      kernel: "qlinear_nf4",
      entryPoint: "gemv",
      constants: { ...constants, MROWS: M },
      bindings,
      workgroups: grid2d(Math.ceil(N / _GEMV_ROWS_PER_WORKGROUP), gpu.limits.maxComputeWorkgroupsPerDimension),
    });
  } else {
    const BM = _tile(M);
    gpu.dispatch({
      kernel: "qlinear_nf4",
      entryPoint: "gemm",
      constants: { ...constants, BM },
      bindings,
      workgroups: [Math.ceil(N / 64), Math.ceil(M / BM)],
    });
  }
  return out;
}

/**
 * `out = dy · deq(w)` for a quantized weight `w` `[N, K]`: the input gradient of `x · deq(w)ᵀ`.
 *
 * @param dy Gradient `[M, N]` f32.
 * @param w Quantized weight `[N, K]`.
 * @param out Destination `[M, K]` f32 (default: a new activations tensor).
 * @returns `[M, K]` f32.
 * @throws {Error} On shape/dtype mismatches (before any dispatch).
 *
 * @example Compared with dequantize-then-multiply in the tests; here a shape check
 * ```ts
 * import { nf4LinearGradInput } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * assert.equal(typeof nf4LinearGradInput, "function");
 * ```
 */
export function nf4LinearGradInput(dy: Tensor, w: QuantizedTensor, out?: Tensor): Tensor {
  const [N, K] = quantizedMatrixShape(w);
  expectF32(dy, [-1, N], `nf4LinearGradInput: output gradient for weight "${w.label}" [${w.shape}]:`);
  const M = dy.shape[0];
  const gpu = dy.gpu;
  const dx = out ?? Tensor.empty(gpu, [M, K], { label: `${w.label} dx` });
  expectF32(dx, [M, K], "nf4LinearGradInput: out");
  if (M === 0) return dx;
  const BM = _tile(M);
  gpu.dispatch({
    kernel: "qlinear_nf4",
    entryPoint: "dx",
    constants: { ..._constants(w, K), BM },
    bindings: _bindings(dy, w, undefined, dx, [M, N, K]),
    workgroups: [Math.ceil(K / 64), Math.ceil(M / BM)],
  });
  return dx;
}
