/**
 * Picking the next token from logits: greedy, or temperature and top-p (nucleus) sampling with the seeded
 * {@linkcode Rng}, as transformers' `TemperatureLogitsWarper` then `TopPLogitsWarper` then a draw.
 *
 * @module
 */

import type { Rng } from "../random.ts";

/** How to pick a token. */
export interface SamplingOptions {
  /** Divide the logits by this before the softmax; 0 (the default) picks greedily. */
  temperature?: number;
  /** Keep the most likely tokens whose mass reaches `topP` (the one crossing it included). Default 1: all. */
  topP?: number;
}

/**
 * The index of the largest logit (the lowest index on ties).
 *
 * @param logits `[vocab]` logits.
 * @returns The greedy token.
 * @throws {Error} For empty logits or a NaN.
 *
 * @example
 * ```ts
 * import { argmax } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * assert.equal(argmax(new Float32Array([0.5, 2, 2, -1])), 1);
 * ```
 */
export function argmax(logits: Float32Array): number {
  if (logits.length === 0) throw new Error("Sampling: empty logits");
  let best = 0;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (Number.isNaN(v)) throw new Error(`Sampling: logit ${i} is NaN`);
    if (v > logits[best]) best = i;
  }
  return best;
}

/**
 * Picks the next token: greedy when `temperature` is 0, else a draw from `softmax(logits / temperature)`
 * restricted to the top-p nucleus (tokens sorted by probability, highest first, kept while the mass before them
 * is below `topP`; ties keep the lower index first).
 *
 * @param logits `[vocab]` logits of the last position (`-Infinity` masks a token).
 * @param rng The seeded generator (one `uniform()` per sampled token; unused when greedy).
 * @param options Temperature and top-p.
 * @returns The token id.
 * @throws {Error} For a NaN logit, all logits `-Infinity`, a negative temperature or `topP` outside (0, 1].
 *
 * @example Greedy, and a seeded draw that repeats
 * ```ts
 * import { Rng } from "@qlora/webgpu";
 * import { sampleToken } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const logits = new Float32Array([1, 3, 2]);
 * assert.equal(sampleToken(logits, new Rng(0)), 1);
 * const opts = { temperature: 0.8, topP: 0.9 };
 * assert.equal(sampleToken(logits, new Rng(7), opts), sampleToken(logits, new Rng(7), opts));
 * ```
 */
export function sampleToken(logits: Float32Array, rng: Rng, options: SamplingOptions = {}): number {
  const { temperature = 0, topP = 1 } = options;
  if (!(temperature >= 0)) throw new Error(`Sampling: temperature ${temperature} must be ≥ 0`);
  if (!(topP > 0 && topP <= 1)) throw new Error(`Sampling: topP ${topP} must be in (0, 1]`);
  const best = argmax(logits);
  if (temperature === 0) return best;
  const top = logits[best];
  if (top === -Infinity) throw new Error("Sampling: every logit is -Infinity");
  // Softmax in float64, shifted by the maximum.
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += p[i] = Math.exp((logits[i] - top) / temperature);
  let order: number[];
  let mass = 0;
  if (topP >= 1) {
    order = Array.from({ length: p.length }, (_, i) => i);
    mass = sum;
  } else {
    const sorted = Array.from({ length: p.length }, (_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
    order = [];
    for (const i of sorted) {
      if (mass / sum >= topP) break;
      order.push(i);
      mass += p[i];
    }
  }
  let u = rng.uniform() * mass;
  for (const i of order) {
    u -= p[i];
    if (u < 0) return i;
  }
  // Rounding left u at or just above 0: the last token with mass.
  for (let k = order.length - 1; k >= 0; k--) if (p[order[k]] > 0) return order[k];
  return best;
}
