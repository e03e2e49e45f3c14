/**
 * Rotary position embeddings on the GPU (`wgsl/rope.wgsl`): the in-place rotation (forward) and its inverse
 * (backward) by a cos/sin table from `ropeTable` (`lib/model/rope.ts`).
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { elementGrid, expectRows, fitsBinding, params } from "./_kernel.ts";

/** Options for {@linkcode ropeApply}. */
export interface RopeApplyOptions {
  /** Tokens per sequence: row `r` of `x` is token `r % T` of sequence `floor(r / T)`. */
  T: number;
  /** Heads per row (`nHeads` for q, `nKvHeads` for k). */
  nHeads: number;
  /** Position of token 0 of every sequence (generation: the cache length so far). Default 0. */
  offset?: number;
  /** Optional u32 `[B]` per-sequence offsets, added to `offset`. */
  offsets?: Tensor;
  /** Rotate by `-θ` (the backward pass: apply to `dq`, `dk`). Default false. */
  inverse?: boolean;
}

/**
 * Rotates `x` `[B*T, nHeads*D]` in place by RoPE (HF `rotate_half` convention): with `inverse`, this is the
 * backward pass of the rotation (its transpose).
 *
 * @param gpu The device.
 * @param x f32 `[B*T, nHeads*D]` (q or k rows, heads contiguous), rotated in place.
 * @param table From `ropeTable`, `[maxPositions, D/2, 2]`.
 * @param options Layout, position offset(s), direction.
 * @returns `x`.
 * @throws {Error} If a position is past the table (with `offsets`, checked on the GPU: those rows become NaN).
 *
 * @example
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { ropeApply } from "@qlora/webgpu/kernels";
 * import { ropeTable } from "@qlora/webgpu/model";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const table = ropeTable(gpu, new Float32Array([Math.PI / 2]), 4);
 * const q = Tensor.fromArray(gpu, new Float32Array([1, 0]), [1, 2]); // one head, D = 2
 * ropeApply(gpu, q, table, { T: 1, nHeads: 1, offset: 1 }); // rotate by 90°
 * const [a, b] = await q.toFloat32();
 * assert.ok(Math.abs(a) < 1e-6 && Math.abs(b - 1) < 1e-6);
 * ```
 */
export function ropeApply(gpu: Gpu, x: Tensor, table: Tensor, options: RopeApplyOptions): Tensor {
  const { T, nHeads, offset = 0, offsets, inverse = false } = options;
  if (table.shape.length !== 3 || table.shape[2] !== 2 || table.dtype !== "f32") {
    throw new Error(`RoPE table "${table.label}" is [${table.shape}] ${table.dtype}, expected [maxPos, D/2, 2] f32`);
  }
  const [maxPos, half] = table.shape;
  const [rows] = expectRows(x, "RoPE input", nHeads * 2 * half);
  if (rows % T !== 0) {
    throw new Error(`RoPE input "${x.label}" is [${x.shape}] f32, expected a multiple of T = ${T} rows`);
  }
  if (offsets && (offsets.dtype !== "u32" || offsets.size !== rows / T)) {
    throw new Error(
      `RoPE offsets "${offsets.label}" is [${offsets.shape}] ${offsets.dtype}, expected [${rows / T}] u32`,
    );
  }
  if (!offsets && offset + T > maxPos) {
    throw new Error(`RoPE: positions up to ${offset + T - 1} are past the table "${table.label}" of ${maxPos}`);
  }
  fitsBinding(gpu, x, "RoPE input");
  const n = rows * nHeads * half;
  gpu.dispatch({
    kernel: "rope",
    bindings: [
      x.binding,
      table.binding,
      (offsets ?? table).binding,
      params([rows, T, nHeads, half, offset, offsets ? 1 : 0, maxPos, inverse ? 1 : 0]),
    ],
    workgroups: elementGrid(gpu, n),
  });
  return x;
}
