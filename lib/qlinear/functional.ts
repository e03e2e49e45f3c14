/**
 * The QLoRA linear map as stateless functions over tensors:
 * `Y = X·deq(W)ᵀ + s·(drop(X)·Aᵀ)·Bᵀ + b` and its backward (gradients for X, A and B; never for W).
 *
 * Kernels: the fused NF4 products of `lib/kernels/qlinear_nf4.ts` (deq(W) is never materialized), which also add
 * the adapter's up product (forward) and its `dX` term (backward), and the dense `matmul` for the other rank-r LoRA
 * products: a forward is two dispatches, `XA` then the fused product. Dropout is the hash mask of
 * `lib/kernels/dropout.ts`, keyed by `(seed, row-major index in X)`: the same seed in forward and backward gives the
 * same mask, and nothing is stored.
 * `loraDown` forms the adapter input `drop(X)·Aᵀ` alone, by the code `qlinearForward` uses for it (a recompute
 * that needs only what the backward reads gets the forward's mask).
 * Activations larger than one storage binding are split into row ranges by the kernels (`gpu.maxBindingBytes`); the
 * weight and the adapter are bound whole. The dropout mask stays keyed by the index in the whole X when X is split.
 *
 * @module
 */

import type { Tensor } from "../gpu/tensor.ts";
import { loraUpBackward } from "../kernels/lora_up_backward.ts";
import { matmul } from "../kernels/matmul_f32.ts";
import { expectF32, quantizedMatrixShape } from "../kernels/_kernel.ts";
import { nf4Linear, nf4LinearGradInput, type Nf4LinearPath, type Nf4Precision } from "../kernels/qlinear_nf4.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";

/** The trainable low-rank adapter of one linear map. */
export interface LoraAdapter {
  /** Down projection `[r, K]` f32. */
  a: Tensor;
  /** Up projection `[N, r]` f32. */
  b: Tensor;
  /** Scale `s` of the adapter's output (`alpha / r`, or `alpha / √r` for rsLoRA). */
  scale: number;
  /** Dropout probability on the adapter's input, in [0, 1) (default 0). */
  dropout?: number;
}

/** Options of {@linkcode qlinearForward}. */
export interface QLinearForwardOptions {
  /** Bias `[N]` f32. */
  bias?: Tensor;
  /** Dropout mask seed (the backward must get the same one). */
  seed?: number;
  /** Kernel for the quantized product (default `auto`: GEMV for M ≤ 16 rows). */
  path?: Nf4LinearPath;
  /** Arithmetic of the tiled quantized product (default `f32`; `f16` needs `shader-f16`). */
  precision?: Nf4Precision;
  /** Destination `[M, N]`. */
  out?: Tensor;
  /**
   * The adapter input `drop(X)·Aᵀ` `[M, r]` already formed for this X and seed (kept by a gradient checkpoint):
   * used, and returned as `xa`, instead of formed again.
   */
  xa?: Tensor;
  /** Add `Y` into `out` instead of overwriting it (needs `out`; e.g. a residual). */
  accumulate?: boolean;
}

/** Options of {@linkcode loraDown}. */
export interface LoraDownOptions {
  /** Dropout mask seed (the backward must get the same one). */
  seed?: number;
  /** Label of the result (default: A's label with ` XA`). */
  label?: string;
}

/** What {@linkcode qlinearForward} returns. */
export interface QLinearForwardResult {
  /** Output `[M, N]` f32. */
  y: Tensor;
  /** `drop(X)·Aᵀ` `[M, r]` f32, needed by the backward (the caller frees it). */
  xa: Tensor;
}

/** Options of {@linkcode qlinearBackward}. */
export interface QLinearBackwardOptions {
  /** The forward's dropout seed. */
  seed?: number;
  /** Compute `dX` (default true; false for the first layer of a network). */
  needDx?: boolean;
  /** Destination for `dA` `[r, K]` (default: a new tensor). */
  dA?: Tensor;
  /** Destination for `dB` `[N, r]` (default: a new tensor). */
  dB?: Tensor;
  /** Add into `dA` and `dB` instead of overwriting them (gradient accumulation over micro-batches). */
  accumulate?: boolean;
  /** Arithmetic of `dY·deq(W)` (default `f32`; `f16` needs `shader-f16`). */
  precision?: Nf4Precision;
  /** Destination for `dX` `[M, K]` (default: a new tensor). */
  dx?: Tensor;
  /** Add into `dx` instead of overwriting it (needs `dx`; e.g. `dX` summed over the projections of one input). */
  accumulateDx?: boolean;
}

/** What {@linkcode qlinearBackward} returns. */
export interface QLinearGradients {
  /** `dX` `[M, K]`, or null when not asked for. */
  dx: Tensor | null;
  /** `dA` `[r, K]`. */
  dA: Tensor;
  /** `dB` `[N, r]`. */
  dB: Tensor;
}

/** Dimensions of a validated QLoRA linear call. */
interface _Dims {
  M: number;
  N: number;
  K: number;
  r: number;
}

function _validate(x: Tensor, w: QuantizedTensor, lora: LoraAdapter, bias?: Tensor): _Dims {
  const [N, K] = quantizedMatrixShape(w);
  const where = `qlinear "${w.label}" [${N},${K}]:`;
  expectF32(x, [-1, K], `${where} input`);
  expectF32(lora.a, [-1, K], `${where} LoRA A`);
  const r = lora.a.shape[0];
  if (r < 1 || r > Math.min(N, K)) {
    throw new Error(
      `${where} LoRA rank ${r} (A "${lora.a.label}" [${lora.a.shape}]) must be in [1, ${Math.min(N, K)}]`,
    );
  }
  expectF32(lora.b, [N, r], `${where} LoRA B`);
  if (bias) expectF32(bias, [N], `${where} bias`);
  _checkDropout(lora, where);
  if (!Number.isFinite(lora.scale)) throw new RangeError(`${where} LoRA scale ${lora.scale} is not finite`);
  return { M: x.shape[0], N, K, r };
}

function _checkDropout(lora: LoraAdapter, where: string): void {
  const p = lora.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new RangeError(`${where} LoRA dropout ${p} is outside [0, 1)`);
}

function _dropout(lora: LoraAdapter, seed: number | undefined, on: "a" | "b" | "out") {
  const p = lora.dropout ?? 0;
  return p > 0 ? { p, seed: seed ?? 0, on } : undefined;
}

// The one place the forward's dropout mask is applied: keyed by the element index of X (operand "a").
function _down(x: Tensor, lora: LoraAdapter, options: LoraDownOptions): Tensor {
  const { seed, label = `${lora.a.label} XA` } = options;
  return matmul(x, lora.a, { transB: true, dropout: _dropout(lora, seed, "a"), label });
}

/**
 * The adapter's input `XA = drop(X)·Aᵀ` alone, exactly as {@linkcode qlinearForward} forms it (same dropout mask
 * for the same seed): what a recompute needs for the backward when the layer's output is not.
 *
 * @param x Input `[M, K]` f32.
 * @param lora Adapter (`A [r, K]` and dropout are read).
 * @param options Dropout seed, label, binding limit.
 * @returns `XA` `[M, r]` f32 (the caller frees it).
 * @throws {Error} On mismatched shapes/dtypes or a dropout outside [0, 1), before any dispatch.
 *
 * @example Without dropout, XA is X·Aᵀ
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { loraDown } from "@qlora/webgpu/qlinear";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const x = Tensor.fromArray(gpu, new Float32Array([1, 2, 3, 4]), [2, 2]);
 * const a = Tensor.fromArray(gpu, new Float32Array([1, 1]), [1, 2]);
 * assert.deepEqual([...await loraDown(x, { a, b: a, scale: 1 }).toFloat32()], [3, 7]);
 * assert.throws(() => loraDown(a, { a: x, b: a, scale: 1, dropout: 1 }), /dropout 1 is outside \[0, 1\)/);
 * ```
 */
export function loraDown(x: Tensor, lora: LoraAdapter, options: LoraDownOptions = {}): Tensor {
  const where = "LoRA down projection:";
  expectF32(lora.a, [-1, -1], `${where} A`);
  expectF32(x, [-1, lora.a.shape[1]], `${where} input`);
  _checkDropout(lora, where);
  return _down(x, lora, options);
}

/**
 * Forward of the QLoRA linear map: `Y = X·deq(W)ᵀ + s·(drop(X)·Aᵀ)·Bᵀ + b`.
 *
 * @param x Input `[M, K]` f32.
 * @param w Frozen quantized weight `[N, K]`.
 * @param lora Adapter `A [r, K]`, `B [N, r]`, scale, dropout.
 * @param options Bias, dropout seed, kernel path, destination, accumulation, an already formed `XA`.
 * @returns `y` `[M, N]` and `xa = drop(X)·Aᵀ` `[M, r]` for the backward.
 * @throws {Error} On mismatched shapes/dtypes, or a rank above `min(N, K)`, before any dispatch.
 *
 * @example Validation happens before any GPU work
 * ```ts
 * import { qlinearForward, requestGpu, Tensor, type QuantizedTensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const w = { shape: [8, 4], blocksize: 64, label: "w" } as unknown as QuantizedTensor;
 * const x = Tensor.empty(gpu, [2, 5], { label: "x" });
 * const lora = { a: Tensor.empty(gpu, [2, 4]), b: Tensor.empty(gpu, [8, 2]), scale: 1 };
 * assert.throws(() => qlinearForward(x, w, lora), /input "x" is \[2,5\] f32, expected \[\*,4\] f32/);
 * ```
 */
export function qlinearForward(
  x: Tensor,
  w: QuantizedTensor,
  lora: LoraAdapter,
  options: QLinearForwardOptions = {},
): QLinearForwardResult {
  const { M, r } = _validate(x, w, lora, options.bias);
  const label = `${w.label} lora`;
  const { bias, path, out, precision, accumulate } = options;
  if (options.xa) expectF32(options.xa, [M, r], `qlinear "${w.label}": kept XA`);
  const xa = options.xa ?? _down(x, lora, { seed: options.seed, label: `${label} XA` });
  const y = nf4Linear(x, w, { bias, path, out, precision, accumulate, lora: { xa, b: lora.b, scale: lora.scale } });
  return { y, xa };
}

/**
 * Backward of the QLoRA linear map, given `dY`:
 * `dX = dY·deq(W) + s·mask⊙((dY·B)·A)`, `dB = s·dYᵀ·XA`, `dA = s·(dY·B)ᵀ·drop(X)`, where `XA` is the forward's
 * `drop(X)·Aᵀ` and `mask` its dropout multipliers. No gradient is formed for `W`.
 *
 * @param dy Output gradient `[M, N]` f32.
 * @param x The forward's input `[M, K]`.
 * @param xa The forward's `drop(X)·Aᵀ` `[M, r]`.
 * @param w Frozen quantized weight `[N, K]`.
 * @param lora The forward's adapter.
 * @param options Dropout seed, whether to form `dX`, gradient destinations and accumulation (of `dA` and `dB`, and
 *   separately of `dX`).
 * @returns `dx` (or null), `dA`, `dB`.
 * @throws {Error} On mismatched shapes/dtypes, before any dispatch.
 *
 * @example Validation happens before any GPU work
 * ```ts
 * import { qlinearBackward, requestGpu, Tensor, type QuantizedTensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const w = { shape: [8, 4], blocksize: 64, label: "w" } as unknown as QuantizedTensor;
 * const lora = { a: Tensor.empty(gpu, [2, 4]), b: Tensor.empty(gpu, [8, 2]), scale: 1 };
 * const x = Tensor.empty(gpu, [3, 4]);
 * const xa = Tensor.empty(gpu, [3, 2]);
 * const dy = Tensor.empty(gpu, [3, 7], { label: "dy" });
 * assert.throws(() => qlinearBackward(dy, x, xa, w, lora), /output gradient "dy" is \[3,7\] f32, expected \[3,8\]/);
 * ```
 */
export function qlinearBackward(
  dy: Tensor,
  x: Tensor,
  xa: Tensor,
  w: QuantizedTensor,
  lora: LoraAdapter,
  options: QLinearBackwardOptions = {},
): QLinearGradients {
  const { M, N, r } = _validate(x, w, lora);
  const where = `qlinear "${w.label}" backward:`;
  expectF32(dy, [M, N], `${where} output gradient`);
  expectF32(xa, [M, r], `${where} saved XA`);
  const accumulate = options.accumulate ?? false;
  if (accumulate && (!options.dA || !options.dB)) throw new Error(`${where} accumulate needs dA and dB`);
  const { precision } = options;
  const s = lora.scale;
  const label = `${w.label} lora`;
  // dY·B [M, r] and dB in one dispatch. dB and dA reduce over the M rows: split, they are summed range by range.
  const { dyb, dB } = loraUpBackward(dy, lora.b, xa, { scale: s, accumulate, dB: options.dB, label });
  const dA = matmul(dyb, x, {
    transA: true,
    alpha: s,
    accumulate,
    out: options.dA,
    dropout: _dropout(lora, options.seed, "b"),
    label: `${label} dA`,
  });
  let dx: Tensor | null = null;
  if (options.needDx ?? true) {
    const dropout = _dropout(lora, options.seed, "out");
    dx = nf4LinearGradInput(dy, w, {
      precision,
      out: options.dx,
      accumulate: options.accumulateDx,
      lora: { dyb, a: lora.a, scale: s, dropout },
    });
  }
  dyb.destroy();
  return { dx, dA, dB };
}
