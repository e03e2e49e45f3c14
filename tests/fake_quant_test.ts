// The MinMax fake quantizer against the float64 reference: per-row scales, clamping, ties, zero rows; and the
// straight-through gradient by finite differences away from the rounding steps.
import assert from "node:assert/strict";
import { requestGpu, Rng, Tensor } from "../mod.ts";
import { fakeQuantRows, quantMax } from "../lib/kernels/mod.ts";
import { fakeQuantRowsRef } from "../lib/qat/mod.ts";
import { assertClose, finiteDifference } from "./_assert.ts";

Deno.test("fakeQuantRows: matches the float64 reference at 2, 4 and 8 bits (ragged rows, zero row)", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(3);
  for (const [rows, cols] of [[1, 5], [7, 300], [33, 64]]) {
    for (const bits of [2, 4, 8]) {
      const x = rng.normalArray(rows * cols, 0, 2);
      x.fill(0, 0, cols); // a zero row stays zero
      const ref = fakeQuantRowsRef(x, cols, bits);
      const got = await fakeQuantRows(gpu, Tensor.fromArray(gpu, x, [rows, cols]), cols, bits).toFloat32();
      // f32 division may land a value on the other side of a rounding step only when it is within rounding of it.
      for (let r = 0; r < rows; r++) {
        let m = 0;
        for (let i = 0; i < cols; i++) m = Math.max(m, Math.abs(x[r * cols + i]));
        const scale = m / quantMax(bits);
        for (let i = 0; i < cols; i++) {
          const j = r * cols + i;
          const frac = Math.abs((x[j] / scale) % 1);
          if (scale > 0 && Math.abs(frac - 0.5) < 1e-5) continue;
          assert.ok(
            Math.abs(got[j] - ref[j]) <= 1e-6 * m + 1e-30,
            `${rows}x${cols} w${bits} [${j}]: ${got[j]} vs ${ref[j]}`,
          );
        }
      }
    }
  }
  gpu.destroy();
});

Deno.test("fakeQuantRows: the row max maps to ±qmax, codes are clamped; bad bits and shapes are named", async () => {
  const gpu = await requestGpu();
  const x = Tensor.fromArray(gpu, new Float32Array([-14, 2.5, 3.5, 1]), [1, 4]);
  // scale 2: -7, 1.25 -> 1 (2), 1.75 -> 2 (4), 0.5 -> 0 (half to even)
  assert.deepEqual([...await fakeQuantRows(gpu, x, 4, 4).toFloat32()], [-14, 2, 4, 0]);
  assert.throws(() => fakeQuantRows(gpu, x, 4, 16), /16 bits is outside \[2, 16\) \(16 means not quantized\)/);
  assert.throws(() => fakeQuantRows(gpu, x, 3, 4), /Fake-quantized tensor .* multiple of 3 columns/);
  gpu.destroy();
});

Deno.test("fakeQuantRows: the straight-through gradient is the finite-difference slope of the unrounded map", () => {
  // STE: d q(x) / dx is taken as 1 inside [-max, max]. With MinMax nothing lies outside, so the gradient of a
  // loss through the quantizer equals the gradient of the loss at the quantized point, applied to x.
  const rng = new Rng(5);
  const x = rng.normalArray(8);
  const w = rng.normalArray(8);
  const q = fakeQuantRowsRef(x, 8, 4);
  const loss = (v: Float64Array) => v.reduce((s, vi, i) => s + w[i] * vi * vi, 0);
  const ste = Float64Array.from(q, (qi, i) => 2 * w[i] * qi); // dL/dq, passed straight to x
  assertClose(ste, finiteDifference(loss, Float64Array.from(q)), { atol: 1e-6 }, "dL/dq by finite differences");
});
