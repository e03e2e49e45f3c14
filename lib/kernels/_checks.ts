// Argument checks shared by the kernel wrappers and the QLoRA functions: run before any dispatch, so a bad call
// fails with an error naming the tensors and shapes instead of a GPU validation error.

import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";

/**
 * Checks a quantized weight is a 2-D `[N, K]` matrix with a power-of-two block size (the kernels shift by it).
 *
 * @param w The weight.
 * @returns `[N, K]`.
 * @throws {Error} Naming the weight and its shape or block size.
 */
export function quantizedMatrixShape(w: QuantizedTensor): [number, number] {
  if (w.shape.length !== 2) throw new Error(`Quantized weight "${w.label}" must be 2-D [N, K], got [${w.shape}]`);
  if (!Number.isInteger(Math.log2(w.blocksize))) {
    throw new Error(`Quantized weight "${w.label}": block size ${w.blocksize} is not a power of two`);
  }
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

/**
 * Checks every operand fits one storage binding (`maxStorageBufferBindingSize`, 128 MiB on llvmpipe).
 *
 * @param gpu The device.
 * @param op Names the operation in the error.
 * @param operands `[name, bytes]` pairs.
 * @param limit Binding limit (default: the device's).
 * @throws {Error} Naming the operand, its size and the limit.
 */
export function checkBindingSize(
  gpu: Gpu,
  op: string,
  operands: [string, number][],
  limit: number = gpu.limits.maxStorageBufferBindingSize,
): void {
  for (const [name, bytes] of operands) {
    if (bytes > limit) {
      throw new Error(
        `${op}: ${name} takes ${bytes} bytes, over the storage binding limit of ${limit} bytes (only the row-split operands may be larger)`,
      );
    }
  }
}
