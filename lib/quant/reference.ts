/**
 * The plain TypeScript reference of 4-bit blockwise quantization (NF4, FP4, INT4) with optional double
 * quantization, in float32 arithmetic (`Math.fround` after every operation). It defines the results the GPU
 * kernels must reproduce byte for byte, and follows `tests/fixtures/README.md` (bitsandbytes' layout):
 *
 * - `r = 1/absmax` (float32), `xn = x * r`; NF4/INT4 index = number of thresholds `T` with `xn > T`; FP4 as
 *   bitsandbytes' `dQuantizeFP4` (sign bit, then a magnitude rank on `|xn|`);
 * - a block whose absmax is below the smallest normal float32 (2^-126, so also 0) is a zero block: every index is
 *   the zero index (7 for NF4/INT4, 0 for FP4), because GPUs may flush subnormals;
 * - odd `n`: the last low nibble is the zero index;
 * - double quantization: `offset = mean(absmax)` computed as a pairwise (binary tree, zero-padded to a power of
 *   two) float32 sum times `fround(1/nb)` (the order the GPU reduction uses; PyTorch's CUDA `mean` also
 *   multiplies by `1/n`); then per group of 256: `absmax2 = max|c|`, `cn = c * (1/absmax2)`, code = nearest
 *   dynamic-map entry by float32 midpoints, ties to the even index; a group whose `absmax2` is below 2^-126
 *   gets code 0 (bitsandbytes computes `0 * inf = NaN` there, which its kernels map to 0).
 *
 * @module
 */

import {
  codeTable,
  DYNAMIC_CODE_SIGNED,
  FP4_RANK_TO_BITS,
  FP4_THRESHOLDS,
  INT4_THRESHOLDS,
  NF4_THRESHOLDS,
  type QuantType,
  zeroIndex,
} from "./code_tables.ts";
import type { HostQuantized, NestedQuantState, QuantState, SourceDType } from "./quant_state.ts";

const f = Math.fround;

/** Smallest normal float32: smaller scales count as zero. */
export const MIN_NORMAL_F32 = 2 ** -126;

/** Options for 4-bit blockwise quantization. */
export interface Quantize4bitOptions {
  /** Values per block: a power of two ≥ 64 (default 64). */
  blocksize?: number;
  /** Double-quantize the absmax (default true). */
  doubleQuant?: boolean;
  /** Code table (default `nf4`). */
  quantType?: QuantType;
  /** Logical shape (default `[x.length]`). */
  shape?: readonly number[];
  /** Element type of the source tensor, recorded in the state (default `f32`). */
  dtype?: SourceDType;
}

/**
 * Checks a block size: a power of two, at least 64.
 *
 * @param blocksize The block size.
 * @throws {Error} If it is not one.
 *
 * @example
 * ```ts
 * import { checkBlocksize } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * assert.throws(() => checkBlocksize(96));
 * ```
 */
export function checkBlocksize(blocksize: number): void {
  if (!Number.isInteger(blocksize) || blocksize < 64 || (blocksize & (blocksize - 1)) !== 0) {
    throw new Error(`Block size ${blocksize} is not a power of two ≥ 64`);
  }
}

/**
 * The 4-bit index of one normalized value `xn = x * (1/absmax)`.
 *
 * @param xn The normalized value (float32).
 * @param quantType The code table.
 * @returns The index 0..15.
 *
 * @example
 * ```ts
 * import { index4bit } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * assert.equal(index4bit(1, "nf4"), 15);
 * assert.equal(index4bit(-1, "fp4"), 11);
 * ```
 */
export function index4bit(xn: number, quantType: QuantType): number {
  if (quantType === "fp4") {
    const a = Math.abs(xn);
    let rank = 0;
    for (const t of FP4_THRESHOLDS) rank += a > t ? 1 : 0;
    return FP4_RANK_TO_BITS[rank] | (xn < 0 ? 8 : 0);
  }
  let idx = 0;
  for (const t of quantType === "nf4" ? NF4_THRESHOLDS : INT4_THRESHOLDS) idx += xn > t ? 1 : 0;
  return idx;
}

/**
 * Pairwise float32 sum (a binary tree over the values zero-padded to a power of two) times `fround(1/n)`.
 *
 * @param values The values (n ≥ 1).
 * @returns The float32 mean.
 *
 * @example
 * ```ts
 * import { meanF32 } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * assert.equal(meanF32(new Float32Array([1, 2, 3, 4])), 2.5);
 * ```
 */
export function meanF32(values: Float32Array): number {
  let size = 1;
  while (size < values.length) size *= 2;
  const v = new Float32Array(size);
  v.set(values);
  for (let w = size / 2; w >= 1; w /= 2) {
    for (let i = 0; i < w; i++) v[i] = v[2 * i] + v[2 * i + 1];
  }
  return f(v[0] * f(1 / values.length));
}

/**
 * Quantizes float32 values to 4 bits in blocks (bitsandbytes' `quantize_4bit`), on the host.
 *
 * @param x The values (f16/bf16 sources: convert to float32 first; exact).
 * @param opts Block size, double quantization, code table, shape, source dtype.
 * @returns Packed codes and state.
 *
 * @example
 * ```ts
 * import { dequantize4bitRef, quantize4bitRef } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * const q = quantize4bitRef(new Float32Array([1, -1, 0.5]), { doubleQuant: false });
 * assert.deepEqual([...q.packed], [0xf0, 0xc7]);
 * assert.deepEqual([...dequantize4bitRef(q)], [1, -1, 0.44070982933044434].map(Math.fround));
 * ```
 */
export function quantize4bitRef(x: Float32Array, opts: Quantize4bitOptions = {}): HostQuantized {
  const blocksize = opts.blocksize ?? 64;
  checkBlocksize(blocksize);
  const quantType = opts.quantType ?? "nf4";
  const shape = opts.shape ?? [x.length];
  const n = x.length;
  if (shape.reduce((a, b) => a * b, 1) !== n) throw new Error(`Shape [${shape}] does not hold ${n} values`);
  const nb = Math.ceil(n / blocksize);
  const absmax = new Float32Array(nb);
  const idx = new Uint8Array(n + (n & 1)).fill(zeroIndex(quantType));
  for (let b = 0; b < nb; b++) {
    const end = Math.min(n, (b + 1) * blocksize);
    let m = 0;
    for (let i = b * blocksize; i < end; i++) m = Math.max(m, Math.abs(x[i]));
    absmax[b] = m;
    if (m < MIN_NORMAL_F32) continue;
    const r = f(1 / m);
    for (let i = b * blocksize; i < end; i++) idx[i] = index4bit(f(x[i] * r), quantType);
  }
  const packed = new Uint8Array(idx.length / 2);
  for (let k = 0; k < packed.length; k++) packed[k] = (idx[2 * k] << 4) | idx[2 * k + 1];
  const base = { quantType, shape: [...shape], dtype: opts.dtype ?? "f32", blocksize, quantMap: codeTable(quantType) };
  const state: QuantState = (opts.doubleQuant ?? true)
    ? { ...base, ...doubleQuantizeRef(absmax) }
    : { ...base, absmax };
  return { packed, state };
}

/**
 * Double quantization of first-level scales: subtract their mean, then 8-bit blockwise (groups of 256) with the
 * signed dynamic map.
 *
 * @param absmax First-level scales.
 * @returns The 8-bit codes and the nested state.
 *
 * @example
 * ```ts
 * import { doubleQuantizeRef } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * const { absmax, nested } = doubleQuantizeRef(new Float32Array([1, 3]));
 * assert.equal(nested.offset, 2);
 * assert.deepEqual([...absmax], [0, 255]);
 * ```
 */
export function doubleQuantizeRef(
  absmax: Float32Array,
): { absmax: Uint8Array; nested: NestedQuantState } {
  const offset = meanF32(absmax);
  const groups = Math.ceil(absmax.length / 256);
  const absmax2 = new Float32Array(groups);
  const codes = new Uint8Array(absmax.length);
  const code2 = DYNAMIC_CODE_SIGNED;
  for (let g = 0; g < groups; g++) {
    const end = Math.min(absmax.length, (g + 1) * 256);
    let m = 0;
    for (let i = g * 256; i < end; i++) m = Math.max(m, Math.abs(f(absmax[i] - offset)));
    absmax2[g] = m;
    if (m < MIN_NORMAL_F32) continue;
    const r = f(1 / m);
    for (let i = g * 256; i < end; i++) codes[i] = nearestCode8(f(f(absmax[i] - offset) * r));
  }
  return { absmax: codes, nested: { absmax: absmax2, quantMap: code2, blocksize: 256, offset } };
}

const MID8 = Float32Array.from(
  { length: 255 },
  (_, j) => f(f(DYNAMIC_CODE_SIGNED[j] + DYNAMIC_CODE_SIGNED[j + 1]) * 0.5),
);

/**
 * Index of the nearest entry of the signed dynamic map: the number of float32 midpoints below `v`, a value on a
 * midpoint taking the even index of the two.
 *
 * @param v A value in [-1, 1].
 * @returns The index 0..255.
 *
 * @example
 * ```ts
 * import { nearestCode8 } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * assert.equal(nearestCode8(1), 255);
 * assert.equal(nearestCode8(0), 127);
 * ```
 */
export function nearestCode8(v: number): number {
  let lo = 0;
  let hi = 255;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (MID8[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo < 255 && MID8[lo] === v && (lo & 1) ? lo + 1 : lo;
}

/**
 * The per-block scales of a state: `absmax`, or with double quantization
 * `fround(fround(code2[q] * absmax2[b/256]) + offset)`.
 *
 * @param state The quant state.
 * @returns `f32[nb]` scales.
 *
 * @example
 * ```ts
 * import { blockScales, quantize4bitRef } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * const q = quantize4bitRef(new Float32Array([2, 1]), { doubleQuant: false });
 * assert.deepEqual([...blockScales(q.state)], [2]);
 * ```
 */
export function blockScales(state: QuantState): Float32Array {
  const nested = state.nested;
  if (!nested) return state.absmax as Float32Array;
  return Float32Array.from(
    state.absmax,
    (q, b) => f(f(nested.quantMap[q] * nested.absmax[Math.floor(b / nested.blocksize)]) + nested.offset),
  );
}

/**
 * Dequantizes on the host (bitsandbytes' `dequantize_4bit`): `out[i] = fround(code[idx[i]] * scale[i/blocksize])`.
 *
 * @param q Packed codes and state.
 * @returns The float32 values.
 *
 * @example
 * ```ts
 * import { dequantize4bitRef, quantize4bitRef } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * const q = quantize4bitRef(new Float32Array([0, 0, 0]));
 * assert.deepEqual([...dequantize4bitRef(q)], [0, 0, 0]);
 * ```
 */
export function dequantize4bitRef(q: HostQuantized): Float32Array {
  const { state, packed } = q;
  const n = state.shape.reduce((a, b) => a * b, 1);
  const scales = blockScales(state);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const byte = packed[i >> 1];
    const idx = i & 1 ? byte & 15 : byte >> 4;
    out[i] = state.quantMap[idx] * scales[Math.floor(i / state.blocksize)];
  }
  return out;
}

/**
 * Storage cost in bits per parameter: 4 for the code, plus the scales — `32/blocksize` without double
 * quantization; `8/blocksize + 32/(256·blocksize)` with it (4.127 for block 64, 4.5 without). Given `numel`,
 * the exact figure for that tensor (padding nibble, partial blocks and the 32-bit offset included; the shared
 * code tables not counted).
 *
 * @param blocksize Values per block.
 * @param doubleQuant Whether absmax is double-quantized.
 * @param numel Number of parameters; omit for the large-tensor limit.
 * @returns Bits per parameter.
 *
 * @example
 * ```ts
 * import { bitsPerParameter } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * assert.equal(bitsPerParameter(64, false), 4.5);
 * assert.equal(bitsPerParameter(64, true).toFixed(3), "4.127");
 * ```
 */
export function bitsPerParameter(blocksize: number, doubleQuant: boolean, numel?: number): number {
  if (numel === undefined) return 4 + (doubleQuant ? 8 / blocksize + 32 / (256 * blocksize) : 32 / blocksize);
  const nb = Math.ceil(numel / blocksize);
  const scaleBits = doubleQuant ? 8 * nb + 32 * Math.ceil(nb / 256) + 32 : 32 * nb;
  return (8 * Math.ceil(numel / 2) + scaleBits) / numel;
}
