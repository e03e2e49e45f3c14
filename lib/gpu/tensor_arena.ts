/**
 * `TensorArena`: many tensors packed as views of a few buffers, so one dispatch (or one clear) can cover all of
 * them.
 *
 * @module
 */

import { DTYPE_BYTES } from "../dtype.ts";
import type { MemoryClass } from "./budget.ts";
import type { Gpu } from "./device.ts";
import { numel, Tensor } from "./tensor.ts";

/** One tensor of a {@linkcode TensorArena}: its shape and the name used in errors. */
export interface ArenaSpec {
  /** Dimensions, row-major. */
  shape: readonly number[];
  /** Names the tensor in errors. */
  label: string;
}

/** Options of {@linkcode TensorArena}. */
export interface TensorArenaOptions {
  /** Memory class of the buffers (default `activations`). */
  class?: MemoryClass;
  /** Names the buffers (`LABEL 0`, `LABEL 1`, ...; default `"arena"`). */
  label?: string;
}

/**
 * Elements each tensor's place in a {@linkcode TensorArena} is rounded up to: 256 f32 are 1 KiB, so every view
 * starts at a bindable offset and a 256-element block (as 8-bit optimizer states quantize) never straddles two
 * tensors.
 *
 * @example
 * ```ts
 * import { ARENA_ALIGN } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * assert.equal(ARENA_ALIGN * 4 % 256, 0);
 * ```
 */
export const ARENA_ALIGN = 256;

/**
 * f32 tensors packed in order, each at a multiple of {@linkcode ARENA_ALIGN} elements of a buffer, the buffers
 * split at `gpu.limits.maxBufferSize` (a tensor never straddles two). The buffers are zero-filled and accounted in
 * the budget under the given memory class; the padding between tensors stays zero unless a caller writes past a
 * view.
 *
 * @example Two tensors in one buffer, cleared together
 * ```ts
 * import { requestGpu } from "@qlora/webgpu";
 * import { TensorArena } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const arena = new TensorArena(gpu, [{ shape: [2, 3], label: "a" }, { shape: [4], label: "b" }]);
 * const [a, b] = arena.tensors;
 * assert.equal(a.buffer, b.buffer);
 * assert.equal(b.byteOffset, 1024);
 * b.write(new Float32Array([1, 2, 3, 4]));
 * arena.clear();
 * assert.deepEqual([...await b.toFloat32()], [0, 0, 0, 0]);
 * arena.destroy();
 * ```
 */
export class TensorArena {
  /** The device. */
  readonly gpu: Gpu;
  /** The views, in the order of the specs. */
  readonly tensors: readonly Tensor[];
  #buffers: GPUBuffer[];

  /**
   * Allocates the buffers and makes the views.
   *
   * @param gpu The device.
   * @param specs The tensors (f32), in order.
   * @param options Memory class and label of the buffers.
   * @throws {Error} Naming a tensor larger than `maxBufferSize`.
   */
  constructor(gpu: Gpu, specs: readonly ArenaSpec[], options: TensorArenaOptions = {}) {
    this.gpu = gpu;
    const max = gpu.limits.maxBufferSize;
    const bytesOf = (s: ArenaSpec) => Math.ceil(numel(s.shape) / ARENA_ALIGN) * ARENA_ALIGN * DTYPE_BYTES.f32;
    // Each spec's (buffer, byte offset), then the buffers' sizes.
    const places: [number, number][] = [];
    const sizes: number[] = [];
    for (const s of specs) {
      const bytes = bytesOf(s);
      if (bytes > max) {
        throw new Error(
          `TensorArena: tensor "${s.label}" [${s.shape}] needs ${bytes} bytes, past maxBufferSize (${max})`,
        );
      }
      if (sizes.length === 0 || sizes[sizes.length - 1] + bytes > max) sizes.push(0);
      places.push([sizes.length - 1, sizes[sizes.length - 1]]);
      sizes[sizes.length - 1] += bytes;
    }
    const label = options.label ?? "arena";
    const cls = options.class ?? "activations";
    const buffers: GPUBuffer[] = [];
    try {
      sizes.forEach((size, i) => buffers.push(gpu.createBuffer(Math.max(size, 4), cls, `${label} ${i}`)));
    } catch (e) {
      for (const b of buffers) gpu.free(b);
      throw e;
    }
    this.#buffers = buffers;
    this.tensors = specs.map((s, i) =>
      Tensor.view(gpu, buffers[places[i][0]], places[i][1], s.shape, { label: s.label })
    );
  }

  /** The buffers the views share, in order (empty once destroyed). */
  get buffers(): readonly GPUBuffer[] {
    return this.#buffers;
  }

  /** Sets every tensor (and the padding) to zero: one clear per buffer, ordered after recorded work. */
  clear(): void {
    for (const b of this.#buffers) this.gpu.clear(b);
  }

  /** Frees the buffers (after pending work is submitted); the views must not be used afterwards. */
  destroy(): void {
    for (const b of this.#buffers) this.gpu.free(b);
    this.#buffers = [];
  }
}
