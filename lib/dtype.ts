/**
 * Element types and the host-side conversions between them (f16 uses the built-in `Float16Array`).
 *
 * @module
 */

/** Element types the toolkit stores in GPU buffers and files. `u8` is packed four to a WGSL `u32`. */
export type DType = "f32" | "f16" | "bf16" | "u32" | "i32" | "u8";

/** Bytes per element of a {@linkcode DType}. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = {
  f32: 4,
  f16: 2,
  bf16: 2,
  u32: 4,
  i32: 4,
  u8: 1,
};

/**
 * Converts bfloat16 bit patterns to float32 values (exact).
 *
 * @param bits bf16 bit patterns.
 * @returns The values as float32.
 *
 * @example
 * ```ts
 * import { bf16ToF32 } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...bf16ToF32(new Uint16Array([0x3f80, 0xc000]))], [1, -2]);
 * ```
 */
export function bf16ToF32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

/**
 * Converts float32 values to bfloat16 bit patterns, rounding to nearest even (as PyTorch does); NaN stays NaN.
 *
 * @param values float32 values.
 * @returns bf16 bit patterns.
 *
 * @example
 * ```ts
 * import { f32ToBf16 } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...f32ToBf16(new Float32Array([1, -2]))], [0x3f80, 0xc000]);
 * ```
 */
export function f32ToBf16(values: Float32Array): Uint16Array {
  const u = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    if ((x & 0x7fffffff) > 0x7f800000) {
      out[i] = (x >>> 16) | 0x40; // quiet NaN
    } else {
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}

/**
 * Converts raw little-endian bytes of `dtype` to float32 values (f32, f16, bf16).
 *
 * @param bytes The raw bytes (length a multiple of the element size).
 * @param dtype Their element type.
 * @returns A fresh Float32Array.
 * @throws {Error} For integer dtypes.
 *
 * @example
 * ```ts
 * import { bytesToF32 } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * const bytes = new Uint8Array(new Float16Array([0.5, 2]).buffer);
 * assert.deepEqual([...bytesToF32(bytes, "f16")], [0.5, 2]);
 * ```
 */
export function bytesToF32(bytes: Uint8Array, dtype: DType): Float32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  // Copy first: the slice may not be aligned for a typed view.
  const buf = bytes.slice().buffer;
  switch (dtype) {
    case "f32":
      return new Float32Array(buf, 0, n);
    case "f16":
      return Float32Array.from(new Float16Array(buf, 0, n));
    case "bf16":
      return bf16ToF32(new Uint16Array(buf, 0, n));
    default:
      throw new Error(`Cannot convert ${dtype} to float32`);
  }
}

/**
 * Throws if any value is NaN or ±Inf, naming what holds it and the first bad index: one pass over the bit
 * patterns (no conversion), for host data that is read anyway.
 *
 * @param values float32 values, or raw little-endian bytes of `dtype` (length a multiple of the element size).
 * @param what What they are, for the message, e.g. `model/x.safetensors: tensor "model.norm.weight"`.
 * @param dtype The element type of raw bytes (ignored for a Float32Array).
 * @throws {Error} `<what>: <value> at index <i> is not finite` for the first NaN or ±Inf.
 *
 * @example
 * ```ts
 * import { assertFinite } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * assertFinite(new Float32Array([1, -2]), "w");
 * assert.throws(() => assertFinite(new Float32Array([1, NaN]), "w"), /w: NaN at index 1 is not finite/);
 * const bf16 = new Uint8Array(new Uint16Array([0x3f80, 0xff80]).buffer);
 * assert.throws(() => assertFinite(bf16, 'tensor "w"', "bf16"), /tensor "w": -Infinity at index 1 is not finite/);
 * ```
 */
export function assertFinite(
  values: Float32Array | Uint8Array,
  what: string,
  dtype: "f32" | "f16" | "bf16" = "f32",
): void {
  if (values instanceof Float32Array) dtype = "f32";
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const size = DTYPE_BYTES[dtype];
  const n = Math.floor(bytes.byteLength / size);
  // A typed view needs an aligned offset; data read from a file is usually aligned already.
  const data = bytes.byteOffset % size === 0 ? bytes : bytes.slice();
  // All exponent bits set is NaN or ±Inf in each of the three formats.
  const [words, exponent] = dtype === "f32"
    ? [new Uint32Array(data.buffer, data.byteOffset, n), 0x7f800000]
    : [new Uint16Array(data.buffer, data.byteOffset, n), dtype === "f16" ? 0x7c00 : 0x7f80];
  for (let i = 0; i < n; i++) {
    if ((words[i] & exponent) === exponent) {
      const value = bytesToF32(data.subarray(i * size, (i + 1) * size), dtype)[0];
      throw new Error(`${what}: ${value} at index ${i} is not finite`);
    }
  }
}
