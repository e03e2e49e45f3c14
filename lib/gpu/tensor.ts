/**
 * `Tensor`: a shaped, typed GPU buffer accounted in the memory budget.
 *
 * @module
 */

import { bf16ToF32, type DType, DTYPE_BYTES } from "../dtype.ts";
import type { MemoryClass } from "./budget.ts";
import type { Gpu } from "./device.ts";

/** Host arrays a tensor can be made from or read into. */
export type HostArray = Float32Array | Float16Array | Uint16Array | Uint32Array | Int32Array | Uint8Array;

/** Options for creating a {@linkcode Tensor}. */
export interface TensorOptions {
  /** Element type (default `f32`). */
  dtype?: DType;
  /** Memory class (default `activations`). */
  class?: MemoryClass;
  /** Names the tensor in errors (default `"tensor"`). */
  label?: string;
  /**
   * {@linkcode Tensor.empty}: false when a kernel writes every element before anything reads one, so a buffer
   * reused from the pool need not be cleared (default true: zeros).
   */
  zero?: boolean;
}

/**
 * Number of elements of a shape.
 *
 * @param shape Dimensions.
 * @returns Their product (1 for a scalar).
 *
 * @example
 * ```ts
 * import { numel } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * assert.equal(numel([2, 3, 4]), 24);
 * ```
 */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * A shaped, typed GPU buffer. Row-major; `u8` elements are packed four to a `u32` word (little-endian).
 *
 * @example Round trip
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const t = Tensor.fromArray(gpu, new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3], { label: "x" });
 * assert.deepEqual([...await t.toFloat32()], [1, 2, 3, 4, 5, 6]);
 * t.destroy();
 * ```
 */
export class Tensor {
  /** The device this tensor lives on. */
  readonly gpu: Gpu;
  /** The buffer (size rounded up to a multiple of 4 bytes). */
  readonly buffer: GPUBuffer;
  /** Dimensions, row-major. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
  /** Name used in errors. */
  readonly label: string;

  /** Wraps an existing accounted buffer; prefer {@linkcode Tensor.empty} or {@linkcode Tensor.fromArray}. */
  constructor(gpu: Gpu, buffer: GPUBuffer, shape: readonly number[], dtype: DType, label: string) {
    this.gpu = gpu;
    this.buffer = buffer;
    this.shape = [...shape];
    this.dtype = dtype;
    this.label = label;
  }

  /**
   * A zero-filled tensor (with `zero: false`, of unspecified contents: for outputs a kernel writes in full).
   * Activations and scratch reuse the buffers of freed tensors of the same byte size.
   *
   * @example
   * ```ts
   * import { requestGpu, Tensor } from "@qlora/webgpu";
   * import assert from "node:assert/strict";
   * const gpu = await requestGpu();
   * Tensor.fromArray(gpu, new Float32Array([1, 2]), [2]).destroy();
   * const t = Tensor.empty(gpu, [2], { label: "zeros" });
   * assert.deepEqual([...await t.toFloat32()], [0, 0]);
   * ```
   */
  static empty(gpu: Gpu, shape: readonly number[], opts: TensorOptions = {}): Tensor {
    const dtype = opts.dtype ?? "f32";
    const label = opts.label ?? "tensor";
    const bytes = numel(shape) * DTYPE_BYTES[dtype];
    const buffer = gpu.createBuffer(bytes, opts.class ?? "activations", label, 0, opts.zero ?? true);
    return new Tensor(gpu, buffer, shape, dtype, label);
  }

  /** A tensor holding a copy of `data` (length must match the shape). */
  static fromArray(gpu: Gpu, data: HostArray, shape: readonly number[], opts: TensorOptions = {}): Tensor {
    const dtype = opts.dtype ?? defaultDType(data);
    const n = numel(shape);
    const expected = n * DTYPE_BYTES[dtype];
    if (data.byteLength !== expected) {
      throw new Error(
        `Tensor "${opts.label ?? "tensor"}": ${data.byteLength} bytes of data for shape [${shape}] ` +
          `${dtype} (${expected} bytes)`,
      );
    }
    const t = Tensor.empty(gpu, shape, { ...opts, dtype, zero: data.byteLength === 0 });
    t.write(data); // every byte of the buffer (the padding too)
    return t;
  }

  /** Number of elements. */
  get size(): number {
    return numel(this.shape);
  }

  /** Bytes of data (without the padding to 4). */
  get byteLength(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  /** Overwrites the contents from the host, ordered after recorded work. */
  write(data: HostArray): void {
    if (data.byteLength % 4 === 0) {
      this.gpu.write(this.buffer, data);
    } else {
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.gpu.write(this.buffer, padded);
    }
  }

  /** The raw bytes, after all recorded work. */
  async readBytes(): Promise<Uint8Array> {
    const buf = await this.gpu.read(this.buffer, 0, Math.ceil(this.byteLength / 4) * 4);
    return new Uint8Array(buf, 0, this.byteLength);
  }

  /** The values as float32 (f32, f16, bf16 tensors). */
  async toFloat32(): Promise<Float32Array> {
    const bytes = await this.readBytes();
    switch (this.dtype) {
      case "f32":
        return new Float32Array(bytes.buffer, 0, this.size);
      case "f16":
        return Float32Array.from(new Float16Array(bytes.buffer, 0, this.size));
      case "bf16":
        return bf16ToF32(new Uint16Array(bytes.buffer, 0, this.size));
      default:
        throw new Error(`Tensor "${this.label}": toFloat32 of a ${this.dtype} tensor`);
    }
  }

  /** Frees the buffer (after pending work is submitted). */
  destroy(): void {
    this.gpu.free(this.buffer);
  }
}

function defaultDType(data: HostArray): DType {
  if (data instanceof Float32Array) return "f32";
  if (data instanceof Float16Array) return "f16";
  if (data instanceof Uint32Array) return "u32";
  if (data instanceof Int32Array) return "i32";
  if (data instanceof Uint8Array) return "u8";
  throw new Error("Tensor: Uint16Array data needs an explicit dtype (f16 or bf16)");
}
