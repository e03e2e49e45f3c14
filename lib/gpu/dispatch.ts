/**
 * What a dispatch is made of (bindings, workgroup grid) and the error `Gpu` throws; re-exported by `device.ts`.
 *
 * @module
 */

/** Thrown for a GPU validation or out-of-memory error, or a lost device; the message names the kernel. */
export class GpuError extends Error {
  /**
   * Creates the error.
   *
   * @param message What failed, naming the kernel or buffer.
   */
  constructor(message: string) {
    super(message);
    this.name = "GpuError";
  }
}

/**
 * A buffer binding: a whole buffer, a range of one, or uniform data (a typed array, copied into a uniform arena
 * slot that holds those bytes for as long as they are used).
 */
export type Binding = GPUBuffer | GPUBufferBinding | ArrayBufferView;

/** One compute dispatch, for {@linkcode Gpu.dispatch}. */
export interface Dispatch {
  /** The kernel: a file name in `wgsl/` without `.wgsl`. */
  kernel: string;
  /** Entry point (default `main`). */
  entryPoint?: string;
  /** `override` constants (tile sizes, workgroup size, flags). */
  constants?: Record<string, number>;
  /** Bindings of group 0, in binding-number order. */
  bindings: Binding[];
  /** Workgroup counts; at most `maxComputeWorkgroupsPerDimension` each (see {@linkcode grid2d}). */
  workgroups: number | [number, number] | [number, number, number];
  /** Bytes read + written, where known (the profiler reports GB/s). */
  bytes?: number;
  /** Floating point operations, where known (the profiler reports GFLOP/s). */
  flops?: number;
}

/**
 * Splits `count` workgroups into an `[x, y]` grid within the 65535-per-dimension limit. Kernels recover
 * the linear index as `wid.x + wid.y * nwg.x` (with `@builtin(num_workgroups) nwg`) and skip indices `>= count`.
 *
 * @param count Workgroups needed.
 * @param maxPerDim The device's `maxComputeWorkgroupsPerDimension`.
 * @returns Workgroup counts.
 *
 * @example
 * ```ts
 * import { grid2d } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * assert.deepEqual(grid2d(70000), [35000, 2]);
 * ```
 */
export function grid2d(count: number, maxPerDim = 65535): [number, number] {
  if (count <= maxPerDim) return [Math.max(1, count), 1];
  const y = Math.ceil(count / maxPerDim);
  return [Math.ceil(count / y), y];
}
