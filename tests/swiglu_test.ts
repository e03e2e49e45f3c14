import { requestGpu, Rng, Tensor } from "../mod.ts";
import { swigluBackward, swigluForward } from "../lib/kernels/mod.ts";
import { assertClose, finiteDifference } from "./_assert.ts";
import { dotWith, swigluBackwardRef, swigluRef } from "./_ops_ref.ts";

Deno.test("swiglu: forward and backward match the float64 reference, incl. large |gate|", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(3);
  for (const n of [1, 1000, 70001]) {
    const g = rng.normalArray(n, 0, 4), u = rng.normalArray(n), d = rng.normalArray(n);
    g[0] = n > 1 ? -100 : 100; // exp overflow side of the sigmoid
    const [gt, ut, dt] = [g, u, d].map((a) => Tensor.fromArray(gpu, a, [n]));
    const h = swigluForward(gpu, gt, ut);
    const { dGate, dUp } = swigluBackward(gpu, dt, gt, ut);
    const ref = swigluBackwardRef(d, g, u);
    // Elementwise f32 with exp: a few ulp.
    assertClose(await h.toFloat32(), swigluRef(g, u), { rtol: 1e-5, atol: 1e-6 }, `h n=${n}`);
    assertClose(await dGate.toFloat32(), ref.dGate, { rtol: 1e-5, atol: 1e-6 }, `dGate n=${n}`);
    assertClose(await dUp.toFloat32(), ref.dUp, { rtol: 1e-5, atol: 1e-6 }, `dUp n=${n}`);
  }
  gpu.destroy();
});

Deno.test("swiglu: backward matches finite differences of the reference", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(4);
  const n = 12;
  const g = rng.normalArray(n, 0, 2), u = rng.normalArray(n), d = rng.normalArray(n);
  const { dGate, dUp } = swigluBackward(
    gpu,
    ...([d, g, u].map((a) => Tensor.fromArray(gpu, a, [n])) as [Tensor, Tensor, Tensor]),
  );
  const fdG = finiteDifference((x) => dotWith(swigluRef(x, u), d), Float64Array.from(g));
  const fdU = finiteDifference((x) => dotWith(swigluRef(g, x), d), Float64Array.from(u));
  assertClose(await dGate.toFloat32(), fdG, { rtol: 1e-4, atol: 1e-6 }, "dGate vs finite differences");
  assertClose(await dUp.toFloat32(), fdU, { rtol: 1e-4, atol: 1e-6 }, "dUp vs finite differences");
  gpu.destroy();
});

Deno.test("swiglu: element ranges under a small binding limit equal the whole dispatch", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(5);
  // 70001 elements, 40000-byte limit: 8 ranges of 9984 elements (a multiple of the 64-element alignment) + ragged.
  const n = 70001, limit = 40_000;
  const small = await requestGpu({ maxBindingBytes: limit });
  const host = [0, 1, 2].map(() => rng.normalArray(n));
  const [gt, ut, dt] = host.map((h) => Tensor.fromArray(gpu, h, [n]));
  const [gs, us, ds] = host.map((h) => Tensor.fromArray(small, h, [n]));
  const whole = await swigluForward(gpu, gt, ut).toFloat32();
  assertEqual(await swigluForward(small, gs, us).toFloat32(), whole, "h");
  const a = swigluBackward(gpu, dt, gt, ut), b = swigluBackward(small, ds, gs, us);
  assertEqual(await b.dGate.toFloat32(), await a.dGate.toFloat32(), "dGate");
  assertEqual(await b.dUp.toFloat32(), await a.dUp.toFloat32(), "dUp");
  small.destroy();
  gpu.destroy();
});

// Elementwise kernels compute each element alone: splitting the dispatch must not change a bit.
function assertEqual(actual: Float32Array, want: Float32Array, label: string): void {
  assertClose(actual, want, { atol: 0 }, label);
}
