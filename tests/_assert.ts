// Shared test helpers: numeric comparison with stated tolerances, and central finite differences.
import assert from "node:assert/strict";

/**
 * Asserts |actual - expected| <= atol + rtol * |expected| elementwise; NaN never passes.
 * The message names the label, the first bad index and the worst error.
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: { rtol?: number; atol?: number },
  label: string,
): void {
  assert.equal(actual.length, expected.length, `${label}: length ${actual.length} != ${expected.length}`);
  const rtol = tol.rtol ?? 0;
  const atol = tol.atol ?? 0;
  let worst = 0;
  let bad = -1;
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    const ok = err <= atol + rtol * Math.abs(expected[i]);
    if (!ok || Number.isNaN(actual[i])) {
      if (bad < 0) bad = i;
    }
    if (!(err <= worst)) worst = err;
  }
  if (bad >= 0) {
    assert.fail(
      `${label}: index ${bad}: got ${actual[bad]}, want ${
        expected[bad]
      } (rtol ${rtol}, atol ${atol}; worst abs error ${worst})`,
    );
  }
}

/** Relative L2 error ‖a − b‖ / ‖b‖. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-300));
}

/**
 * Central finite-difference gradient of a scalar function of `x` (float64), perturbing each entry by ±eps.
 * `f` must not keep `x`.
 */
export function finiteDifference(f: (x: Float64Array) => number, x: Float64Array, eps = 1e-4): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    x[i] = v + eps;
    const fp = f(x);
    x[i] = v - eps;
    const fm = f(x);
    x[i] = v;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}
