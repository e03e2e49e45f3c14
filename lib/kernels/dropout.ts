/**
 * The deterministic dropout mask shared by every kernel that applies LoRA dropout: element `i` (its row-major
 * index in the `[M, K]` input) is kept when `keepHash(seed, i) >= dropoutThreshold(p)`, and kept values are
 * scaled by `1 / (1 - p)`. The mask is a pure function of `(seed, i)`, so forward and backward (and a
 * recomputation under gradient checkpointing) see the same mask without storing it.
 *
 * @module
 */

function _lowbias32(v: number): number {
  let x = v >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * The 32-bit hash behind the dropout mask, identical to `keep_hash()` in `wgsl/_dropout_hash.wgsl`:
 * `lowbias32(i ^ lowbias32(seed))`.
 *
 * @param seed Dropout seed (any u32).
 * @param index Row-major element index.
 * @returns A u32.
 *
 * @example
 * ```ts
 * import { keepHash } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * assert.equal(keepHash(7, 3), keepHash(7, 3));
 * assert.notEqual(keepHash(7, 3), keepHash(8, 3));
 * ```
 */
export function keepHash(seed: number, index: number): number {
  return _lowbias32((index ^ _lowbias32(seed)) >>> 0);
}

/**
 * The u32 threshold under which {@linkcode keepHash} drops an element: `round(p · 2^32)`, clamped.
 *
 * @param p Dropout probability in [0, 1).
 * @returns The threshold (0 keeps everything).
 * @throws {RangeError} If `p` is outside [0, 1).
 *
 * @example
 * ```ts
 * import { dropoutThreshold } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * assert.equal(dropoutThreshold(0), 0);
 * assert.equal(dropoutThreshold(0.5), 2 ** 31);
 * ```
 */
export function dropoutThreshold(p: number): number {
  if (!(p >= 0 && p < 1)) throw new RangeError(`Dropout probability ${p} is outside [0, 1)`);
  return Math.min(Math.round(p * 2 ** 32), 2 ** 32 - 1);
}

/**
 * The dropout multiplier of element `index`: `0` if dropped, `1 / (1 - p)` if kept (the TypeScript reference
 * of the in-kernel mask).
 *
 * @param seed Dropout seed.
 * @param index Row-major element index in the `[M, K]` input.
 * @param p Dropout probability.
 * @returns 0 or 1/(1-p).
 *
 * @example
 * ```ts
 * import { dropoutScale } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * assert.equal(dropoutScale(1, 5, 0), 1);
 * assert.ok([0, 2].includes(dropoutScale(1, 5, 0.5)));
 * ```
 */
export function dropoutScale(seed: number, index: number, p: number): number {
  return keepHash(seed, index) >= dropoutThreshold(p) ? 1 / (1 - p) : 0;
}
