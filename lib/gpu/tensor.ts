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
  /** Where the data starts in `buffer`: 0, or a view's offset (a multiple of 256). */
  readonly byteOffset: number;
  /** A view borrows its buffer: `destroy` leaves it to the owner. */
  readonly isView: boolean;

  /**
   * Wraps an existing accounted buffer; prefer {@linkcode Tensor.empty} or {@linkcode Tensor.fromArray}. With a
   * `byteOffset`, the tensor is a view of part of a buffer someone else owns (see {@linkcode Tensor.view}).
   */
  constructor(gpu: Gpu, buffer: GPUBuffer, shape: readonly number[], dtype: DType, label: string, byteOffset?: number) {
    this.gpu = gpu;
    this.buffer = buffer;
    this.shape = [...shape];
    this.dtype = dtype;
    this.label = label;
    this.byteOffset = byteOffset ?? 0;
    this.isView = byteOffset !== undefined;
  }

  /**
   * A tensor over `buffer` from `byteOffset` (a multiple of 256, so it can be bound), which stays the caller's:
   * destroying the view frees nothing. Many tensors packed in one buffer let one dispatch cover all of them.
   *
   * @example Two views of one buffer
   * ```ts
   * import { requestGpu, Tensor } from "@qlora/webgpu";
   * import assert from "node:assert/strict";
   * const gpu = await requestGpu();
   * const whole = Tensor.fromArray(gpu, new Float32Array(128).map((_, i) => i), [128]);
   * const second = Tensor.view(gpu, whole.buffer, 256, [2, 2], { label: "second" });
   * assert.deepEqual([...await second.toFloat32()], [64, 65, 66, 67]);
   * second.destroy(); // frees nothing
   * assert.equal((await whole.toFloat32())[64], 64);
   * ```
   */
  static view(
    gpu: Gpu,
    buffer: GPUBuffer,
    byteOffset: number,
    shape: readonly number[],
    opts: TensorOptions = {},
  ): Tensor {
    const dtype = opts.dtype ?? "f32";
    const label = opts.label ?? "view";
    const bytes = Math.ceil(numel(shape) * DTYPE_BYTES[dtype] / 4) * 4;
    if (byteOffset % 256 !== 0 || byteOffset + bytes > buffer.size) {
      throw new RangeError(
        `Tensor view "${label}": ${bytes} bytes at offset ${byteOffset} do not fit a buffer of ${buffer.size} ` +
          `bytes at a multiple of 256`,
      );
    }
    return new Tensor(gpu, buffer, shape, dtype, label, byteOffset);
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

  /**
   * What a kernel binds: the whole buffer when the tensor owns it, else (a view) the tensor's byte range padded to
   * 4 bytes, so that `arrayLength` in WGSL is the tensor's length either way.
   */
  get binding(): GPUBuffer | GPUBufferBinding {
    if (!this.isView) return this.buffer;
    return { buffer: this.buffer, offset: this.byteOffset, size: Math.ceil(this.byteLength / 4) * 4 };
  }

  /** Overwrites the contents from the host, ordered after recorded work. */
  write(data: HostArray): void {
    if (data.byteLength % 4 === 0) {
      this.gpu.write(this.buffer, data, this.byteOffset);
    } else {
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.gpu.write(this.buffer, padded, this.byteOffset);
    }
  }

  /** The raw bytes, after all recorded work. */
  async readBytes(): Promise<Uint8Array> {
    const buf = await this.gpu.read(this.buffer, this.byteOffset, Math.ceil(this.byteLength / 4) * 4);
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

  /** Sets every element to zero, ordered after recorded work. */
  clear(): void {
    this.gpu.clear(this.buffer, this.byteOffset, Math.ceil(this.byteLength / 4) * 4);
  }

  /** Frees the buffer (after pending work is submitted); a view frees nothing. */
  destroy(): void {
    if (!this.isView) this.gpu.free(this.buffer);
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
