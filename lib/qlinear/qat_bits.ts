/**
 * The bit widths LLM-QAT trains for: weights, activations (the inputs of the seven projections) and the KV cache
 * (the outputs of `k_proj` and `v_proj`), written `w4a8kv4` as in the paper; 16 means not quantized.
 *
 * @module
 */

/** Bits per kind; 16: left in full precision. */
export interface QatBits {
  /** Weights, per output channel. */
  w: number;
  /** Projection inputs, per token. */
  a: number;
  /** Keys and values, per token. */
  kv: number;
}

/** Full precision: nothing quantized. */
export const FULL_PRECISION: Readonly<QatBits> = { w: 16, a: 16, kv: 16 };

/**
 * Parses `wWaAkvK` (e.g. `w4a8kv4`, `w4a16kv16`, `w8a8kv8`); each width in [2, 8] or 16.
 *
 * @param text The setting.
 * @returns The widths.
 * @throws {Error} For another form or width, quoting it.
 *
 * @example
 * ```ts
 * import { parseQatBits } from "@qlora/webgpu/qlinear";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseQatBits("w4a8kv4"), { w: 4, a: 8, kv: 4 });
 * assert.throws(() => parseQatBits("w4a8"), /w4a8kv4/);
 * ```
 */
export function parseQatBits(text: string): QatBits {
  const m = /^w(\d+)a(\d+)kv(\d+)$/.exec(text.trim().toLowerCase());
  const ok = (b: number) => (b >= 2 && b <= 8) || b === 16;
  if (!m || ![m[1], m[2], m[3]].map(Number).every(ok)) {
    throw new Error(`Quantization bits "${text}": expected wWaAkvK with widths in [2, 8] or 16, e.g. w4a8kv4`);
  }
  return { w: Number(m[1]), a: Number(m[2]), kv: Number(m[3]) };
}

/**
 * Writes widths as {@linkcode parseQatBits} reads them.
 *
 * @param bits The widths.
 * @returns E.g. `w4a8kv4`.
 *
 * @example
 * ```ts
 * import { formatQatBits } from "@qlora/webgpu/qlinear";
 * import assert from "node:assert/strict";
 * assert.equal(formatQatBits({ w: 8, a: 8, kv: 8 }), "w8a8kv8");
 * ```
 */
export function formatQatBits(bits: QatBits): string {
  return `w${bits.w}a${bits.a}kv${bits.kv}`;
}
