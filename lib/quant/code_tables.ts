/**
 * The code tables of 4-bit and 8-bit blockwise quantization, as bitsandbytes defines them: NF4, FP4, a
 * symmetric INT4 for comparison, and the signed dynamic 8-bit map used for double quantization.
 *
 * @module
 */

/** Which 4-bit code table a quantized tensor uses. `int4` is this toolkit's, not bitsandbytes'. */
export type QuantType = "nf4" | "fp4" | "int4";

const f = Math.fround;

/**
 * NF4 (QLoRA's NormalFloat4): entry `k` is the value of 4-bit index `k` (bitsandbytes' `quant_map`).
 *
 * @example
 * ```ts
 * import { NF4_CODE } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * assert.equal(NF4_CODE[7], 0);
 * ```
 */
export const NF4_CODE: Float32Array = new Float32Array([
  -1.0,
  -0.6961928009986877,
  -0.5250730514526367,
  -0.39491748809814453,
  -0.28444138169288635,
  -0.18477343022823334,
  -0.09105003625154495,
  0.0,
  0.07958029955625534,
  0.16093020141124725,
  0.24611230194568634,
  0.33791524171829224,
  0.44070982933044434,
  0.5626170039176941,
  0.7229568362236023,
  1.0,
]);

/**
 * bitsandbytes' FP4 (1 sign, 2 exponent, 1 mantissa bit; bias 3), scaled to [-1, 1]: index `k` (bit 3 the sign)
 * has value `[0, 0.0625, 8, 12, 4, 6, 2, 3][k & 7] / 12`, negated when `k & 8`.
 *
 * @example
 * ```ts
 * import { FP4_CODE } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * assert.equal(FP4_CODE[3], 1);
 * assert.equal(FP4_CODE[11], -1);
 * ```
 */
export const FP4_CODE: Float32Array = Float32Array.from(
  [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3],
  (v) => f(v / 12),
);

/**
 * Symmetric INT4: index `k` in 0..14 stands for level `k - 7` (of -7..7) scaled to `(k - 7) / 7`; index 15 is
 * unused (0). Zero is index 7, as in NF4.
 *
 * @example
 * ```ts
 * import { INT4_CODE } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * assert.equal(INT4_CODE[0], -1);
 * assert.equal(INT4_CODE[7], 0);
 * ```
 */
export const INT4_CODE: Float32Array = Float32Array.from({ length: 16 }, (_, k) => k === 15 ? 0 : f((k - 7) / 7));

/**
 * The NF4 decision thresholds: float32 midpoints of adjacent {@linkcode NF4_CODE} values. A normalized value `xn`
 * gets the index equal to the number of thresholds `T` with `xn > T` (bitsandbytes' `dQuantizeNF4`).
 */
export const NF4_THRESHOLDS: Float32Array = _midpoints(NF4_CODE);

/** The INT4 thresholds: float32 midpoints of adjacent used {@linkcode INT4_CODE} values (14 of them). */
export const INT4_THRESHOLDS: Float32Array = _midpoints(INT4_CODE.subarray(0, 15));

/**
 * The FP4 decision thresholds on `|xn|` (bitsandbytes' `dQuantizeFP4`): the number of thresholds exceeded is a
 * magnitude rank `r` in 0..7, mapped to the 3 low bits by {@linkcode FP4_RANK_TO_BITS}; the sign bit is `xn < 0`.
 */
export const FP4_THRESHOLDS: Float32Array = new Float32Array([
  0.00260417,
  0.0859375,
  0.20833333,
  0.29166667,
  0.4166667,
  0.583333,
  0.8333333,
]);

/** Low 3 bits of the FP4 index for magnitude rank 0..7 (values 0, 0.0625, 2, 3, 4, 6, 8, 12). */
export const FP4_RANK_TO_BITS: readonly number[] = [0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011];

/**
 * The code table of a 4-bit quant type.
 *
 * @param quantType `nf4`, `fp4` or `int4`.
 * @returns Its 16 values (shared; do not modify).
 *
 * @example
 * ```ts
 * import { codeTable, NF4_CODE } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * assert.equal(codeTable("nf4"), NF4_CODE);
 * ```
 */
export function codeTable(quantType: QuantType): Float32Array {
  switch (quantType) {
    case "nf4":
      return NF4_CODE;
    case "fp4":
      return FP4_CODE;
    case "int4":
      return INT4_CODE;
    default:
      throw new Error(`Unknown 4-bit quant type "${quantType}" (nf4, fp4 or int4)`);
  }
}

/**
 * The 4-bit index that a zero value gets (the zero-block and odd-length padding index): 7 for NF4 and INT4, 0 for FP4.
 *
 * @param quantType The quant type.
 * @returns The index.
 *
 * @example
 * ```ts
 * import { zeroIndex } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * assert.equal(zeroIndex("nf4"), 7);
 * ```
 */
export function zeroIndex(quantType: QuantType): number {
  return quantType === "fp4" ? 0 : 7;
}

/**
 * bitsandbytes' `create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)`: the dynamic 8-bit map (a
 * decimal exponent in unary, then a linear fraction). Computed, not pasted; float32 arithmetic exactly as
 * PyTorch does it on CUDA (its `linspace` contracts `start + step * i` into a fused multiply-add), which is what
 * bitsandbytes' stored `nested_quant_map` holds.
 *
 * @param signed Signed map (double quantization uses `true`).
 * @returns 256 sorted float32 values.
 *
 * @example
 * ```ts
 * import { createDynamicMap } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * const code = createDynamicMap(true);
 * assert.equal(code.length, 256);
 * assert.equal(code[255], 1);
 * ```
 */
export function createDynamicMap(signed = true): Float32Array {
  const maxExponentBits = 7;
  const nonSignBits = 7;
  const data: number[] = [];
  for (let i = 0; i < maxExponentBits; i++) {
    const items = signed
      ? 2 ** (i + nonSignBits - maxExponentBits) + 1
      : 2 ** (i + nonSignBits - maxExponentBits + 1) + 1;
    const b = _linspaceCuda(0.1, 1, items);
    const scale = f(10 ** (-(maxExponentBits - 1) + i));
    for (let k = 0; k + 1 < b.length; k++) {
      const mean = f(f(b[k] + b[k + 1]) / 2);
      data.push(f(scale * mean));
      if (signed) data.push(f(-scale * mean));
    }
  }
  data.push(0, 1);
  while (data.length < 256) data.push(0);
  return Float32Array.from(data.sort((a, b) => a - b));
}

/** The signed dynamic 8-bit map (`createDynamicMap(true)`), bitsandbytes' `nested_quant_map`. */
export const DYNAMIC_CODE_SIGNED: Float32Array = createDynamicMap(true);

/** PyTorch's CUDA `linspace` in float32: `fma(step, i, start)` in the first half, `fma(-step, n-1-i, end)` after. */
function _linspaceCuda(start: number, end: number, steps: number): number[] {
  const s = f(start);
  const e = f(end);
  const step = f(f(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  // step * i is exact in float64 (24 + 7 bits) and so is the sum: one rounding, as in a fused multiply-add.
  return Array.from({ length: steps }, (_, i) => i < half ? f(step * i + s) : f(e - step * (steps - 1 - i)));
}

function _midpoints(code: Float32Array): Float32Array {
  return Float32Array.from({ length: code.length - 1 }, (_, k) => f(f(code[k] + code[k + 1]) * 0.5));
}
