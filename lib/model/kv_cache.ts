/**
 * The key/value cache of KV-cached generation: per layer, keys and values of every position so far.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";

/**
 * Keys and values (after RoPE) of `batchSize` sequences, `capacity` positions each, for every layer:
 * `k[l]`, `v[l]` are f32 `[batchSize, capacity, nKvHeads·headDim]`, accounted as activations. Made by
 * `LlamaModel.createKvCache`; filled by `prefill` and `decodeStep`.
 *
 * @example
 * ```ts
 * import { requestGpu } from "@qlora/webgpu";
 * import { KvCache } from "@qlora/webgpu/model";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const cache = new KvCache(gpu, 2, 1, 16, 32);
 * assert.equal(cache.k[1].size, 16 * 32);
 * assert.deepEqual(cache.lengths, [0]);
 * cache.destroy();
 * ```
 */
export class KvCache {
  /** Sequences. */
  readonly batchSize: number;
  /** Positions per sequence. */
  readonly capacity: number;
  /** Keys per layer. */
  readonly k: Tensor[];
  /** Values per layer. */
  readonly v: Tensor[];
  /** Positions filled per sequence. */
  lengths: number[];

  /**
   * Allocates an empty cache (prefer `LlamaModel.createKvCache`, which sizes it from the config).
   *
   * @param gpu The device.
   * @param layers Decoder layers.
   * @param batchSize Sequences.
   * @param capacity Positions per sequence.
   * @param rowSize `nKvHeads · headDim`.
   */
  constructor(gpu: Gpu, layers: number, batchSize: number, capacity: number, rowSize: number) {
    if (!(Number.isInteger(batchSize) && batchSize > 0 && Number.isInteger(capacity) && capacity > 0)) {
      throw new Error(`KV cache: batch size ${batchSize} and capacity ${capacity} must be positive integers`);
    }
    this.batchSize = batchSize;
    this.capacity = capacity;
    const shape = [batchSize, capacity, rowSize];
    this.k = Array.from({ length: layers }, (_, l) => Tensor.empty(gpu, shape, { label: `kv cache k.${l}` }));
    this.v = Array.from({ length: layers }, (_, l) => Tensor.empty(gpu, shape, { label: `kv cache v.${l}` }));
    this.lengths = new Array(batchSize).fill(0);
  }

  /** Forgets every position (the buffers are kept for the next prompts). */
  reset(): void {
    this.lengths.fill(0);
  }

  /** Frees the cache. */
  destroy(): void {
    for (const t of [...this.k, ...this.v]) t.destroy();
  }
}
