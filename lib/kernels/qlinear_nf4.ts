/**
 * Matrix products with a 4-bit quantized weight that never materialize `deq(W)` (`wgsl/qlinear_nf4.wgsl`):
 * `X · deq(W)ᵀ + b` (GEMV path for up to 16 rows, tiled GEMM otherwise) and `dY · deq(W)`, each optionally with a
 * LoRA adapter's rank-r term fused in and added into an existing output (one dispatch for a QLoRA projection's
 * frozen product, its adapter's up product and a residual).
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
import { dropoutThreshold } from "./dropout.ts";
import {
  checkBindingSize,
  distinct,
  expectF32,
  f32Bits,
  fitsBinding,
  grid,
  matrixTile,
  params,
  productFlops,
  quantizedBytes,
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
  /** A LoRA up product `s · XA · Bᵀ` added to the output. */
  lora?: Nf4LoraUp;
  /** Add into `out` instead of overwriting it (needs `out`; e.g. a residual). */
  accumulate?: boolean;
}

/** The LoRA up product fused into {@linkcode nf4Linear}: `s · XA · Bᵀ`, summed in f32 in `matmul`'s order. */
export interface Nf4LoraUp {
  /** The adapter's input `XA = drop(X)·Aᵀ` `[M, r]` f32. */
  xa: Tensor;
  /** Up projection `B` `[N, r]` f32 (bound whole). */
  b: Tensor;
  /** Scale `s`. */
  scale: number;
}

/**
 * The LoRA term fused into {@linkcode nf4LinearGradInput}: `s · mask ⊙ (dYB · A)`, where `mask` is the dropout
 * mask of the forward's input (`lib/kernels/dropout.ts`, keyed by the element's row-major index in `dX`), as
 * `matmul` applies it on its product.
 */
export interface Nf4LoraGrad {
  /** `dY · B` `[M, r]` f32. */
  dyb: Tensor;
  /** Down projection `A` `[r, K]` f32 (bound whole). */
  a: Tensor;
  /** Scale `s`. */
  scale: number;
  /** The forward's dropout (none when absent or `p` is 0). */
  dropout?: { p: number; seed: number };
}

/** Options of {@linkcode nf4LinearGradInput}. */
export interface Nf4LinearGradInputOptions {
  /** Destination `[M, K]` f32 (default: a new activations tensor). */
  out?: Tensor;
  /** Arithmetic (default `f32`). */
  precision?: Nf4Precision;
  /** A LoRA term `s · mask ⊙ (dYB · A)` added to `dX`. */
  lora?: Nf4LoraGrad;
  /** Add into `out` instead of overwriting it (needs `out`; e.g. `dX` summed over the projections of one input). */
  accumulate?: boolean;
}

const _GEMV_ROWS_PER_WORKGROUP = 4; // NR in the kernel

// Flags of the kernel's params (uniform, not overrides: fewer pipeline variants to compile).
const _FLAG_BIAS = 1;
const _FLAG_DOUBLE_QUANT = 2;
const _FLAG_ALIGNED = 4;
const _FLAG_LORA = 8;
const _FLAG_ACCUMULATE = 16;
const _FLAG_DROP = 32;

/** What one dispatch binds besides the weight: input and output rows, and the LoRA rows and matrix. */
interface _Operands {
  input: Binding;
  out: Binding;
  bias?: Tensor;
  /** The `[M, r]` rows (XA or dYB) and the matrix bound whole (B or A), with the LoRA params. */
  lora?: { rows: Binding; whole: Tensor; r: number; scale: number; dropout?: { p: number; seed: number } };
  accumulate: boolean;
  /** Elements of dX before this row range (keys the dropout mask by the index in the whole dX). */
  indexOffset: number;
}

function _bindings(w: QuantizedTensor, o: _Operands, dims: [number, number, number]): Binding[] {
  const drop = o.lora?.dropout && o.lora.dropout.p > 0 ? o.lora.dropout : undefined;
  const flags = (o.bias ? _FLAG_BIAS : 0) | (w.doubleQuant ? _FLAG_DOUBLE_QUANT : 0) |
    (dims[2] % 8 === 0 ? _FLAG_ALIGNED : 0) | (o.lora ? _FLAG_LORA : 0) | (o.accumulate ? _FLAG_ACCUMULATE : 0) |
    (drop ? _FLAG_DROP : 0);
  const u = params([
    ...dims,
    Math.log2(w.blocksize),
    f32Bits(w.offset),
    flags,
    o.lora?.r ?? 0,
    drop?.seed ?? 0,
    drop ? dropoutThreshold(drop.p) : 0,
    drop ? o.indexOffset : 0,
    f32Bits(o.lora?.scale ?? 0),
    f32Bits(drop ? 1 / (1 - drop.p) : 1),
  ]);
  // Unread placeholders (without FLAG_BIAS, FLAG_LORA): the tables, bound read-only anyway.
  const unused = w.tables;
  return [
    o.input,
    w.packed,
    w.absmax,
    w.tables,
    o.bias?.binding ?? unused,
    o.lora?.rows ?? unused,
    o.lora?.whole.binding ?? unused,
    o.out,
    u,
  ];
}

/**
 * The profiler's figures of one dispatch over `m` rows (`_kernel.ts` states the conventions): the product
 * `[m, inCols]·deq(W)` to `[m, outCols]` and the fused LoRA term `[m, r]·[r, outCols]`; bytes: the stored weight
 * (codes and scales), input rows, output rows (read too when accumulating), bias, LoRA rows and matrix.
 */
function _work(w: QuantizedTensor, o: _Operands, m: number, inCols: number, outCols: number): {
  bytes: number;
  flops: number;
} {
  const lora = o.lora ? m * o.lora.r + o.lora.whole.size : 0;
  const elems = m * inCols + (o.accumulate ? 2 : 1) * m * outCols + (o.bias ? outCols : 0) + lora;
  return {
    bytes: quantizedBytes(w, w.shape[0] * w.shape[1]) + 4 * elems,
    flops: productFlops(m, outCols, inCols) + (o.lora ? productFlops(m, outCols, o.lora.r) : 0),
  };
}

/** Checks the LoRA rows `[M, r]` and the matrix bound whole (`whole` `[r, K]` or `[N, r]`); returns r. */
function _checkLora(op: string, rows: Tensor, M: number, whole: Tensor, wholeShape: (r: number) => number[]): number {
  expectF32(rows, [M, -1], `${op}: LoRA rows`);
  const r = rows.shape[1];
  expectF32(whole, wholeShape(r), `${op}: LoRA matrix`);
  fitsBinding(whole.gpu, whole, `${op}: LoRA matrix`);
  return r;
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
 * `out = x · deq(w)ᵀ (+ bias) (+ s · XA · Bᵀ)` for a quantized weight `w` `[N, K]`, dequantizing tiles in
 * registers and workgroup memory only; with `accumulate`, `out += …`.
 *
 * @param x Input `[M, K]` f32.
 * @param w Quantized weight `[N, K]`.
 * @param options Bias, kernel path, destination, fused LoRA up product, accumulation.
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
 * // A rank-1 adapter (XA = [3], B = [1, 2], s = 0.5) added into an existing output (a residual of 1s).
 * const xa = Tensor.fromArray(gpu, new Float32Array([3]), [1, 1]);
 * const b = Tensor.fromArray(gpu, new Float32Array([1, 2]), [2, 1]);
 * const out = Tensor.fromArray(gpu, new Float32Array([1, 1]), [1, 2]);
 * nf4Linear(x, w, { lora: { xa, b, scale: 0.5 }, out, accumulate: true });
 * assert.deepEqual([...await out.toFloat32()], [-29.5, -28]);
 * ```
 */
export function nf4Linear(x: Tensor, w: QuantizedTensor, options: Nf4LinearOptions = {}): Tensor {
  const [N, K] = quantizedMatrixShape(w);
  expectF32(x, [-1, K], `nf4Linear: input for weight "${w.label}" [${w.shape}]:`);
  const M = x.shape[0];
  const { bias, lora, accumulate = false } = options;
  if (bias) expectF32(bias, [N], "nf4Linear: bias");
  const r = lora ? _checkLora("nf4Linear", lora.xa, M, lora.b, (r) => [N, r]) : 0;
  if (accumulate && !options.out) throw new Error("nf4Linear: accumulate needs an out tensor");
  const path = options.path ?? "auto";
  const gemv = path === "gemv" || (path === "auto" && M <= GEMV_MAX_ROWS);
  if (gemv && M > GEMV_MAX_ROWS) throw new Error(`nf4Linear: the gemv path takes at most 16 rows, got ${M}`);
  const gpu = x.gpu;
  const kernel = _gemmKernel(gpu, options.precision, "nf4Linear");
  _checkWeight(gpu, "nf4Linear", w);
  const ranges = rowRanges(gpu, M, [K * 4, N * 4, ...(lora ? [r * 4] : [])], "nf4Linear");
  const out = options.out ?? Tensor.empty(gpu, [M, N], { label: `${w.label} out`, zero: false }); // written in full
  expectF32(out, [M, N], "nf4Linear: out");
  for (const t of [x, bias, lora?.xa, lora?.b]) if (t) distinct("nf4Linear", t, out);
  if (M === 0) return out;
  for (const range of ranges) {
    const m = range[1] - range[0];
    const operands: _Operands = {
      input: rowBinding(x, K * 4, range),
      out: rowBinding(out, N * 4, range),
      bias,
      lora: lora && { rows: rowBinding(lora.xa, r * 4, range), whole: lora.b, r, scale: lora.scale },
      accumulate,
      indexOffset: 0,
    };
    const bindings = _bindings(w, operands, [m, N, K]);
    const work = _work(w, operands, m, K, N);
    if (gemv) {
      gpu.dispatch({
        kernel: "qlinear_nf4",
        entryPoint: "gemv",
        constants: { MROWS: m === 1 ? 1 : m <= 4 ? 4 : 16 },
        bindings,
        workgroups: grid(gpu, Math.ceil(N / _GEMV_ROWS_PER_WORKGROUP)),
        ...work,
      });
    } else {
      const BM = matrixTile(m);
      gpu.dispatch({
        kernel,
        entryPoint: "gemm",
        constants: { BM },
        bindings,
        workgroups: [Math.ceil(N / 64), Math.ceil(m / BM)],
        ...work,
      });
    }
  }
  return out;
}

/**
 * `out = dy · deq(w) (+ s · mask ⊙ (dYB · A))` for a quantized weight `w` `[N, K]`: the input gradient of
 * `x · deq(w)ᵀ` (with a LoRA adapter's); with `accumulate`, `out += …`.
 *
 * @param dy Gradient `[M, N]` f32.
 * @param w Quantized weight `[N, K]`.
 * @param options Destination `[M, K]` f32 (default: a new activations tensor), arithmetic, fused LoRA term,
 *   accumulation.
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
 * // With a rank-1 adapter: dYB = [4], A = 0.25 everywhere, s = 2: each element gains 2 · 4 · 0.25.
 * const dyb = Tensor.fromArray(gpu, new Float32Array([4]), [1, 1]);
 * const a = Tensor.fromArray(gpu, new Float32Array(64).fill(0.25), [1, 64]);
 * const dx = nf4LinearGradInput(dy, w, { lora: { dyb, a, scale: 2 } });
 * assert.ok((await dx.toFloat32()).every((v) => v === 4));
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
  const { lora, accumulate = false } = options;
  const r = lora ? _checkLora("nf4LinearGradInput", lora.dyb, M, lora.a, (r) => [r, K]) : 0;
  if (accumulate && !options.out) throw new Error("nf4LinearGradInput: accumulate needs an out tensor");
  const gpu = dy.gpu;
  const kernel = _gemmKernel(gpu, options.precision, "nf4LinearGradInput");
  _checkWeight(gpu, "nf4LinearGradInput", w);
  const ranges = rowRanges(gpu, M, [N * 4, K * 4, ...(lora ? [r * 4] : [])], "nf4LinearGradInput");
  const dx = options.out ?? Tensor.empty(gpu, [M, K], { label: `${w.label} dx`, zero: false }); // written in full
  expectF32(dx, [M, K], "nf4LinearGradInput: out");
  for (const t of [dy, lora?.dyb, lora?.a]) if (t) distinct("nf4LinearGradInput", t, dx);
  if (M === 0) return dx;
  for (const range of ranges) {
    const m = range[1] - range[0];
    const BM = matrixTile(m);
    const operands: _Operands = {
      input: rowBinding(dy, N * 4, range),
      out: rowBinding(dx, K * 4, range),
      lora: lora && {
        rows: rowBinding(lora.dyb, r * 4, range),
        whole: lora.a,
        r,
        scale: lora.scale,
        dropout: lora.dropout,
      },
      accumulate,
      indexOffset: range[0] * K,
    };
    gpu.dispatch({
      kernel,
      entryPoint: "dx",
      constants: { BM },
      bindings: _bindings(w, operands, [m, N, K]),
      workgroups: [Math.ceil(K / 64), Math.ceil(m / BM)],
      ..._work(w, operands, m, N, K),
    });
  }
  return dx;
}
