/**
 * A small seeded random generator, so that LoRA init, dropout masks, data shuffling and test inputs repeat.
 *
 * @module
 */

/**
 * Seeded pseudo-random numbers (SplitMix32 state, xorshift-multiply output): fast, repeatable, not cryptographic.
 *
 * @example Same seed, same numbers
 * ```ts
 * import { Rng } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const a = new Rng(42), b = new Rng(42);
 * assert.equal(a.uniform(), b.uniform());
 * assert.equal(new Rng(1).normalArray(4).length, 4);
 * ```
 */
export class Rng {
  #state: number;

  /**
   * Creates a generator.
   *
   * @param seed Any integer; equal seeds give equal sequences.
   */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** The next 32-bit unsigned integer. */
  nextU32(): number {
    this.#state = (this.#state + 0x9e3779b9) >>> 0;
    let z = this.#state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  }

  /** Uniform in [lo, hi) (default [0, 1)). */
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * (this.nextU32() / 4294967296);
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal (Box–Muller), scaled by `std` around `mean`. */
  normal(mean = 0, std = 1): number {
    const u = 1 - this.uniform(); // (0, 1]: log stays finite
    const v = this.uniform();
    return mean + std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** `n` normal float32 values. */
  normalArray(n: number, mean = 0, std = 1): Float32Array<ArrayBuffer> {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.normal(mean, std);
    return out;
  }

  /** `n` uniform float32 values in [lo, hi). */
  uniformArray(n: number, lo = 0, hi = 1): Float32Array<ArrayBuffer> {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.uniform(lo, hi);
    return out;
  }

  /** Shuffles `items` in place (Fisher–Yates) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
  }
}

/**
 * A seed for one part of a seeded whole (a layer's LoRA init, a micro-batch's dropout, an epoch's shuffle): `seed`
 * hashed with each index in turn (golden-ratio multiply, then the murmur3-style finalizer), so that nearby indices
 * give unrelated seeds and streams of neighbouring parts do not overlap.
 *
 * @param seed The whole's seed.
 * @param indices Where the part sits (e.g. layer, projection).
 * @returns A 32-bit unsigned seed.
 *
 * @example
 * ```ts
 * import { deriveSeed } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * assert.equal(deriveSeed(42, 1, 2), deriveSeed(42, 1, 2));
 * assert.notEqual(deriveSeed(42, 1, 2), deriveSeed(42, 2, 1));
 * assert.ok(Number.isInteger(deriveSeed(-1, 7)) && deriveSeed(-1, 7) >= 0);
 * ```
 */
export function deriveSeed(seed: number, ...indices: number[]): number {
  let z = seed >>> 0;
  for (const i of indices) {
    z = (z ^ Math.imul((i + 1) >>> 0, 0x9e3779b1)) >>> 0;
    z = Math.imul(z ^ (z >>> 16), 0x7feb352d) >>> 0;
    z = Math.imul(z ^ (z >>> 15), 0x846ca68b) >>> 0;
    z = (z ^ (z >>> 16)) >>> 0;
  }
  return z;
}
