import assert from "node:assert/strict";
import { QLoRALinear, requestGpu, Rng, Tensor } from "../mod.ts";
import { assertClose } from "./_assert.ts";
import { type LayerRef, maxAbs, randomQuantized, refBackward, refForward } from "./_qlinear_ref.ts";

Deno.test("QLoRALinear: PEFT init (A ~ U(±1/√K), B = 0), seeded; rsLoRA scale", async () => {
  const gpu = await requestGpu();
  const K = 96;
  const make = (seed: number) => new QLoRALinear(randomQuantized(gpu, new Rng(1), 40, K).w, { r: 8, alpha: 16, seed });
  const l1 = make(5);
  const a = await l1.a.toFloat32();
  const bound = 1 / Math.sqrt(K);
  assert.ok(a.every((v) => Math.abs(v) <= bound));
  const std = Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
  assert.ok(Math.abs(std - bound / Math.sqrt(3)) < 0.1 * bound, `std ${std}`);
  assert.ok((await l1.b.toFloat32()).every((v) => v === 0));
  assert.deepEqual(await make(5).a.toFloat32(), a);
  assert.notDeepEqual(await make(6).a.toFloat32(), a);
  assert.equal(l1.scale, 2);
  assert.equal(
    new QLoRALinear(randomQuantized(gpu, new Rng(1), 40, K).w, { r: 16, alpha: 16, useRslora: true }).scale,
    4,
  );
  gpu.destroy();
});

Deno.test("QLoRALinear: forward/backward match float64; grads accumulate until zeroGrad; dropout repeats by seed", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(21);
  const [M, N, K, r] = [6, 24, 40, 4];
  const { w, deq } = randomQuantized(gpu, rng, N, K, { label: "proj" });
  const biasHost = rng.normalArray(N);
  const layer = new QLoRALinear(w, {
    r,
    alpha: 8,
    dropout: 0.2,
    seed: 3,
    bias: Tensor.fromArray(gpu, biasHost, [N]),
  });
  const b = rng.normalArray(N * r);
  layer.b.write(b);
  const a = await layer.a.toFloat32();
  const x = rng.normalArray(M * K);
  const dy = rng.normalArray(M * N);
  const tx = Tensor.fromArray(gpu, x, [M, K]);
  const tdy = Tensor.fromArray(gpu, dy, [M, N]);
  const L: LayerRef = { M, N, K, r, scale: 2, p: 0.2, seed: 99, bias: Float64Array.from(biasHost) };
  const tol = (want: Float64Array) => ({ rtol: 1e-4, atol: 2e-5 * maxAbs(want) });
  const y = await layer.forward(tx, { seed: 99 }).toFloat32();
  const ref = refForward(L, x, deq, a, b);
  assertClose(y, ref.y, tol(ref.y), "y");
  // Same seed, same mask; another seed, another one.
  assert.deepEqual(await layer.forward(tx, { seed: 99, train: false }).toFloat32(), y);
  assert.notDeepEqual(await layer.forward(tx, { seed: 100, train: false }).toFloat32(), y);
  const g = refBackward(L, dy, x, deq, a, b);
  for (let step = 1; step <= 2; step++) {
    layer.forward(tx, { seed: 99 });
    const dx = layer.backward(tdy)!;
    assertClose(await dx.toFloat32(), g.dx, tol(g.dx), "dx");
    assertClose(await layer.gradA.toFloat32(), g.dA.map((v) => step * v), tol(g.dA), `gradA after ${step}`);
    assertClose(await layer.gradB.toFloat32(), g.dB.map((v) => step * v), tol(g.dB), `gradB after ${step}`);
  }
  layer.zeroGrad();
  assert.ok((await layer.gradA.toFloat32()).every((v) => v === 0));
  layer.forward(tx, { seed: 99 });
  assert.equal(layer.backward(tdy, false), null);
  assertClose(await layer.gradB.toFloat32(), g.dB, tol(g.dB), "gradB after zeroGrad");
  assert.throws(() => layer.backward(tdy), /QLoRALinear "proj": backward without a training forward/);
  layer.destroy();
  gpu.destroy();
});

Deno.test("QLoRALinear: bad rank or dropout is a clear error", async () => {
  const gpu = await requestGpu();
  const { w } = randomQuantized(gpu, new Rng(1), 8, 16, { label: "o_proj" });
  assert.throws(
    () => new QLoRALinear(w, { r: 9 }),
    /QLoRALinear "o_proj" \[8,16\]: rank 9 must be an integer in \[1, 8\]/,
  );
  assert.throws(() => new QLoRALinear(w, { r: 2, dropout: -0.1 }), /dropout -0.1 is outside \[0, 1\)/);
  gpu.destroy();
});
