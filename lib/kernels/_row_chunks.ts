// Row ranges for binding tensors larger than one storage binding (`maxStorageBufferBindingSize`, 128 MiB on
// llvmpipe): the kernel wrappers dispatch once per range, binding each row-split operand from the range's offset.

import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";

/**
 * The binding limit a wrapper works to: the device's, or a smaller one (tests force chunking with it).
 *
 * @param gpu The device.
 * @param maxBindingBytes Optional smaller limit.
 * @returns Bytes.
 */
export function bindingLimit(gpu: Gpu, maxBindingBytes?: number): number {
  return Math.min(maxBindingBytes ?? Infinity, gpu.limits.maxStorageBufferBindingSize);
}

/**
 * Splits `rows` rows into ranges `[r0, r1)` such that each row-major operand's range (`rowBytes[i]` bytes per row)
 * fits `maxBytes`, and every range's byte offset in every operand is a multiple of `align`
 * (`minStorageBufferOffsetAlignment`). One range `[0, rows)` when everything fits.
 *
 * @param rows Row count shared by the operands.
 * @param rowBytes Bytes per row of each row-split operand.
 * @param maxBytes Binding limit.
 * @param align Storage binding offset alignment (a power of two).
 * @param what Names the operation in the error.
 * @returns The ranges, in order.
 * @throws {Error} If not even one aligned group of rows fits a binding.
 */
export function rowRanges(
  rows: number,
  rowBytes: readonly number[],
  maxBytes: number,
  align: number,
  what: string,
): [number, number][] {
  const widest = Math.max(...rowBytes);
  if (rows * widest <= maxBytes) return [[0, rows]];
  const gcd = (a: number, b: number): number => b === 0 ? a : gcd(b, a % b);
  // Rows per range must make r0 · rowBytes[i] a multiple of align for every operand: the lcm of the granularities.
  const step = rowBytes.reduce((s, b) => {
    const g = align / gcd(b, align);
    return (s * g) / gcd(s, g);
  }, 1);
  const per = Math.floor(Math.floor(maxBytes / widest) / step) * step;
  if (per === 0) {
    throw new Error(
      `${what}: rows of ${widest} bytes cannot be split into ${step}-row groups within the ${maxBytes}-byte ` +
        `storage binding limit`,
    );
  }
  const out: [number, number][] = [];
  for (let r = 0; r < rows; r += per) out.push([r, Math.min(r + per, rows)]);
  return out;
}

/**
 * Binds rows `[r0, r1)` of a row-major tensor with `rowBytes`-byte rows: the whole buffer when the range is all of it.
 *
 * @param t The tensor.
 * @param rowBytes Bytes per row.
 * @param range `[r0, r1)`.
 * @returns A buffer or a `{ buffer, offset, size }` binding.
 */
export function rowBinding(t: Tensor, rowBytes: number, range: [number, number]): GPUBuffer | GPUBufferBinding {
  const [r0, r1] = range;
  if (r0 === 0 && r1 * rowBytes === t.byteLength) return t.buffer;
  return { buffer: t.buffer, offset: r0 * rowBytes, size: (r1 - r0) * rowBytes };
}
