// The distillation loss KL(teacher ‖ student) and its gradient against the float64 reference and finite differences.
import assert from "node:assert/strict";
import { requestGpu, Rng, Tensor } from "../mod.ts";
import { klDivergence } from "../lib/kernels/mod.ts";
import { klDivergenceRef } from "../lib/qat/mod.ts";
import { assertClose, finiteDifference } from "./_assert.ts";

Deno.test("klDivergence: per-row KL and gradient match float64 (ragged V, masked rows)", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(11);
  for (const [rows, vocab] of [[1, 3], [6, 1000], [3, 32003]]) {
    const s = rng.normalArray(rows * vocab, 0, 3);
    const t = rng.normalArray(rows * vocab, 0, 3);
    const mask = Int32Array.from({ length: rows }, (_, i) => i === 1 ? 0 : 1);
    const ref = klDivergenceRef(s, t, vocab);
    const st = Tensor.fromArray(gpu, s, [rows, vocab]);
    const kl = klDivergence(gpu, st, Tensor.fromArray(gpu, t, [rows, vocab]), Tensor.fromArray(gpu, mask, [rows]), {
      gradScale: 0.5,
    });
    const wantKl = ref.kl.map((v, i) => mask[i] ? v : 0);
    const wantGrad = ref.grad.map((g, i) => mask[Math.floor(i / vocab)] ? 0.5 * g : 0);
    assertClose(await kl.toFloat32(), wantKl, { rtol: 1e-4, atol: 1e-5 }, `kl ${rows}x${vocab}`);
    assertClose(await st.toFloat32(), wantGrad, { rtol: 1e-4, atol: 1e-7 }, `grad ${rows}x${vocab}`);
  }
  gpu.destroy();
});

Deno.test("klDivergence: the gradient is the finite-difference gradient of the summed KL", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(12);
  const [rows, vocab] = [2, 7];
  const s = rng.normalArray(rows * vocab);
  const t = rng.normalArray(rows * vocab);
  const st = Tensor.fromArray(gpu, s, [rows, vocab]);
  klDivergence(gpu, st, Tensor.fromArray(gpu, t, [rows, vocab]), Tensor.fromArray(gpu, new Int32Array([1, 1]), [2]));
  const f = (x: Float64Array) => klDivergenceRef(x, t, vocab).kl.reduce((a, b) => a + b, 0);
  assertClose(await st.toFloat32(), finiteDifference(f, Float64Array.from(s)), { atol: 1e-5 }, "dKL/ds");
  assert.throws(
    () => klDivergence(gpu, st, Tensor.empty(gpu, [rows, vocab - 1]), Tensor.empty(gpu, [2], { dtype: "i32" })),
    /KL teacher logits/,
  );
  gpu.destroy();
});
