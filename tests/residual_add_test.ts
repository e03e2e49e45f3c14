import { requestGpu, Rng, Tensor } from "../mod.ts";
import { residualAdd } from "../lib/kernels/mod.ts";
import { assertClose } from "./_assert.ts";

Deno.test("residualAdd: acc += alpha * x in place", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(5);
  const n = 1027;
  const a = rng.normalArray(n), x = rng.normalArray(n);
  const acc = Tensor.fromArray(gpu, a, [n]);
  residualAdd(gpu, acc, Tensor.fromArray(gpu, x, [n]), -0.25);
  assertClose(
    await acc.toFloat32(),
    Float64Array.from(a, (v, i) => v - 0.25 * x[i]),
    { rtol: 1e-6, atol: 1e-7 },
    "acc",
  );
  gpu.destroy();
});

Deno.test("residualAdd: element ranges under a small binding limit equal the whole dispatch", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(5);
  // 70001 elements, 40000-byte limit: 8 ranges of 9984 elements (a multiple of the 64-element alignment) + ragged.
  const n = 70001, limit = 40_000;
  const small = await requestGpu({ maxBindingBytes: limit });
  const [a, x] = [rng.normalArray(n), rng.normalArray(n)];
  const acc = (g: typeof gpu) =>
    residualAdd(g, Tensor.fromArray(g, a, [n]), Tensor.fromArray(g, x, [n]), 0.5).toFloat32();
  // Elementwise: splitting the dispatch must not change a bit.
  assertClose(await acc(small), await acc(gpu), { atol: 0 }, "residual");
  small.destroy();
  gpu.destroy();
});
