/**
 * Plain TypeScript (float64) references of LLM-QAT's quantizer and distillation loss, for tests and for reading:
 * what `wgsl/fake_quant.wgsl` and `wgsl/kl_divergence.wgsl` compute.
 *
 * @module
 */

/** Round half to even, as WGSL's `round` and `torch.round`. */
function _roundEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Symmetric MinMax fake quantization of each row of `cols` values, in float64:
 * `scale = max|row| / (2^(bits−1) − 1)`, `q = clamp(round(x / scale), −qmax, qmax) · scale`.
 *
 * @param x Row-major values (not modified).
 * @param cols Values per row.
 * @param bits Bits of the quantizer.
 * @returns The fake-quantized values.
 *
 * @example
 * ```ts
 * import { fakeQuantRowsRef } from "@qlora/webgpu/qat";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...fakeQuantRowsRef([7, 1.4, -3.2, 0.5], 4, 4)], [7, 1, -3, 0]);
 * ```
 */
export function fakeQuantRowsRef(x: ArrayLike<number>, cols: number, bits: number): Float64Array {
  const qmax = 2 ** (bits - 1) - 1;
  const out = new Float64Array(x.length);
  for (let r = 0; r * cols < x.length; r++) {
    let m = 0;
    for (let i = 0; i < cols; i++) m = Math.max(m, Math.abs(x[r * cols + i]));
    const scale = m / qmax;
    for (let i = 0; i < cols; i++) {
      const v = x[r * cols + i];
      out[r * cols + i] = scale === 0 ? v : Math.min(qmax, Math.max(-qmax, _roundEven(v / scale))) * scale;
    }
  }
  return out;
}

/**
 * `KL(softmax(t) ‖ softmax(s))` per row of `vocab` logits and its gradient over `s`, in float64.
 *
 * @param s Student logits, row-major.
 * @param t Teacher logits, same shape.
 * @param vocab Logits per row.
 * @returns Per-row KL and `softmax(s) − softmax(t)`.
 *
 * @example
 * ```ts
 * import { klDivergenceRef } from "@qlora/webgpu/qat";
 * import assert from "node:assert/strict";
 * const { kl } = klDivergenceRef([0, 0], [Math.log(3), 0], 2);
 * assert.ok(Math.abs(kl[0] - (0.75 * Math.log(1.5) + 0.25 * Math.log(0.5))) < 1e-12);
 * ```
 */
export function klDivergenceRef(
  s: ArrayLike<number>,
  t: ArrayLike<number>,
  vocab: number,
): { kl: Float64Array; grad: Float64Array } {
  const rows = s.length / vocab;
  const kl = new Float64Array(rows);
  const grad = new Float64Array(s.length);
  const logSoftmax = (x: ArrayLike<number>, o: number) => {
    let m = -Infinity;
    for (let i = 0; i < vocab; i++) m = Math.max(m, x[o + i]);
    let z = 0;
    for (let i = 0; i < vocab; i++) z += Math.exp(x[o + i] - m);
    const lse = m + Math.log(z);
    return Float64Array.from({ length: vocab }, (_, i) => x[o + i] - lse);
  };
  for (let r = 0; r < rows; r++) {
    const ls = logSoftmax(s, r * vocab);
    const lt = logSoftmax(t, r * vocab);
    for (let i = 0; i < vocab; i++) {
      const p = Math.exp(lt[i]);
      kl[r] += p * (lt[i] - ls[i]);
      grad[r * vocab + i] = Math.exp(ls[i]) - p;
    }
  }
  return { kl, grad };
}
