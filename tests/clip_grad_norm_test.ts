import assert from "node:assert/strict";
import { requestGpu, Rng, Tensor } from "../mod.ts";
import { clipGradNorm } from "../lib/kernels/mod.ts";
import { assertClose } from "./_assert.ts";

Deno.test("clipGradNorm: norm and clipping match the reference; no clip below max; NaN reported, grads kept", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(3);
  const host = [5000, 1, 2048 * 3 + 17].map((n) => rng.normalArray(n, 0, 0.1));
  const grads = host.map((g, i) => Tensor.fromArray(gpu, g, [g.length], { label: `g${i}` }));
  let sq = 0;
  for (const g of host) for (const x of g) sq += x * x;
  const want = Math.sqrt(sq);
  const norm = await clipGradNorm(gpu, grads, 1e6);
  assertClose([norm], [want], { rtol: 1e-5 }, "norm");
  for (let i = 0; i < host.length; i++) assert.deepEqual(await grads[i].toFloat32(), host[i]);
  const clipped = await clipGradNorm(gpu, grads, 0.3);
  assertClose([clipped], [want], { rtol: 1e-5 }, "norm before clipping");
  const scale = 0.3 / (want + 1e-6);
  for (let i = 0; i < host.length; i++) {
    assertClose(await grads[i].toFloat32(), host[i].map((x) => x * scale), { rtol: 2e-5, atol: 1e-9 }, `clipped g${i}`);
  }
  assertClose([await clipGradNorm(gpu, grads, 1e6)], [0.3], { rtol: 1e-5 }, "norm after clipping");
  const bad = Float32Array.from(host[0]);
  bad[17] = NaN;
  grads[0].write(bad);
  const before = await grads[1].toFloat32();
  assert.ok(Number.isNaN(await clipGradNorm(gpu, grads, 0.3)));
  assert.deepEqual(await grads[1].toFloat32(), before);
  await assert.rejects(clipGradNorm(gpu, grads, 0), /maxNorm must be > 0/);
  assert.equal(await clipGradNorm(gpu, [], 1), 0);
  gpu.destroy();
});

Deno.test("clipGradNorm: gradients past one storage binding are bound in chunks; same norm and clipped values", async () => {
  const host = [new Rng(4).normalArray(5000 + 2048 * 3, 0, 0.1)];
  const results: Float32Array[] = [];
  const norms: number[] = [];
  for (const maxBindingBytes of [undefined, 4 * 4096]) {
    const gpu = await requestGpu({ maxBindingBytes });
    const g = Tensor.fromArray(gpu, host[0], [host[0].length], { label: "g" });
    norms.push(await clipGradNorm(gpu, [g], 0.3));
    results.push(await g.toFloat32());
    gpu.destroy();
  }
  assertClose([norms[1]], [norms[0]], { rtol: 1e-6 }, "norm");
  assertClose(results[1], results[0], { rtol: 1e-6, atol: 1e-12 }, "clipped");
});
