/**
 * Rotary position embeddings on the GPU (`wgsl/rope.wgsl`): the in-place rotation of q and k together (forward)
 * and its inverse (backward) by a cos/sin table from `ropeTable` (`lib/model/rope.ts`).
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { distinct, elementGrid, expectRows, expectSize, fitsBinding, params } from "./_kernel.ts";

/** Options for {@linkcode ropeApply}. */
export interface RopeApplyOptions {
  /** Tokens per sequence: row `r` of q and k is token `r % T` of sequence `floor(r / T)`. */
  T: number;
  /** Heads per row of q (`nHeads`). */
  nHeads: number;
  /** Heads per row of k (`nKvHeads`). */
  nKvHeads: number;
  /** Position of token 0 of every sequence (generation: the cache length so far). Default 0. */
  offset?: number;
  /** Optional u32 `[B]` per-sequence offsets, added to `offset`. */
  offsets?: Tensor;
  /** Rotate by `-θ` (the backward pass: apply to `dq`, `dk`). Default false. */
  inverse?: boolean;
}

/**
 * Rotates `q` `[B*T, nHeads*D]` and `k` `[B*T, nKvHeads*D]` in place by RoPE (HF `rotate_half` convention), both
 * in one dispatch: with `inverse`, this is the backward pass of the rotation (its transpose).
 *
 * @param gpu The device.
 * @param q f32 `[B*T, nHeads*D]` (q rows, heads contiguous), rotated in place.
 * @param k f32 `[B*T, nKvHeads*D]` (k rows, same positions), rotated in place.
 * @param table From `ropeTable`, `[maxPositions, D/2, 2]`.
 * @param options Layout, position offset(s), direction.
 * @returns `q` and `k`.
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
 * const k = Tensor.fromArray(gpu, new Float32Array([0, 1]), [1, 2]);
 * ropeApply(gpu, q, k, table, { T: 1, nHeads: 1, nKvHeads: 1, offset: 1 }); // rotate by 90°
 * const [a, b] = await q.toFloat32();
 * const [c, d] = await k.toFloat32();
 * assert.ok(Math.abs(a) < 1e-6 && Math.abs(b - 1) < 1e-6);
 * assert.ok(Math.abs(c + 1) < 1e-6 && Math.abs(d) < 1e-6);
 * ```
 */
export function ropeApply(
  gpu: Gpu,
  q: Tensor,
  k: Tensor,
  table: Tensor,
  options: RopeApplyOptions,
): { q: Tensor; k: Tensor } {
  const { T, nHeads, nKvHeads, offset = 0, offsets, inverse = false } = options;
  if (table.shape.length !== 3 || table.shape[2] !== 2 || table.dtype !== "f32") {
    throw new Error(`RoPE table "${table.label}" is [${table.shape}] ${table.dtype}, expected [maxPos, D/2, 2] f32`);
  }
  const [maxPos, half] = table.shape;
  const [rows] = expectRows(q, "RoPE q", nHeads * 2 * half);
  expectSize(k, "RoPE k", rows * nKvHeads * 2 * half);
  distinct("ropeApply", q, k);
  if (rows % T !== 0) {
    throw new Error(`RoPE q "${q.label}" is [${q.shape}] f32, expected a multiple of T = ${T} rows`);
  }
  if (offsets && (offsets.dtype !== "u32" || offsets.size !== rows / T)) {
    throw new Error(
      `RoPE offsets "${offsets.label}" is [${offsets.shape}] ${offsets.dtype}, expected [${rows / T}] u32`,
    );
  }
  if (!offsets && offset + T > maxPos) {
    throw new Error(`RoPE: positions up to ${offset + T - 1} are past the table "${table.label}" of ${maxPos}`);
  }
  fitsBinding(gpu, q, "RoPE q");
  fitsBinding(gpu, k, "RoPE k");
  const n = rows * (nHeads + nKvHeads) * half;
  gpu.dispatch({
    kernel: "rope",
    bindings: [
      q.binding,
      k.binding,
      table.binding,
      (offsets ?? table).binding,
      params([rows, T, nHeads, nKvHeads, half, offset, offsets ? 1 : 0, maxPos, inverse ? 1 : 0]),
    ],
    workgroups: elementGrid(gpu, n),
    // q and k read and written, and the table's cos/sin of the T positions (per sequence with `offsets`).
    bytes: 2 * (q.byteLength + k.byteLength) + (offsets ? rows : T) * half * 8,
  });
  return { q, k };
}
