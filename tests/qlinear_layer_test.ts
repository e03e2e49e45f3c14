// QLoRALinear, the layer the model is built of: PEFT init, forward/backward against the float64 reference, the
// saved context (kept, dropped, recomputed, from a checkpoint), the frozen-only mode, adding into existing tensors,
// and errors.
import assert from "node:assert/strict";
import { QLoRALinear, requestGpu, Rng, Tensor } from "../mod.ts";
import { TensorArena } from "../lib/gpu/mod.ts";
import type { QLoRASaved } from "../lib/qlinear/mod.ts";
import { assertClose } from "./_assert.ts";
import { countGpuCalls } from "./_gpu_counts.ts";
import { type LayerRef, maxAbs, randomQuantized, refBackward, refForward } from "./_qlinear_ref.ts";

const tol = (want: Float64Array) => ({ rtol: 1e-4, atol: 2e-5 * maxAbs(want) });

Deno.test("QLoRALinear: PEFT init (A ~ U(±1/√K), B = 0), seeded; rsLoRA scale", async () => {
  const gpu = await requestGpu();
  const K = 96;
  const w = () => randomQuantized(gpu, new Rng(1), 40, K).w;
  const make = (seed: number) => new QLoRALinear(w(), { lora: { r: 8, alpha: 16, seed } });
  const l1 = make(5);
  assert.ok(l1.hasAdapter());
  const a = await l1.a.toFloat32();
  const bound = 1 / Math.sqrt(K);
  assert.ok(a.every((v) => Math.abs(v) <= bound));
  const std = Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
  assert.ok(Math.abs(std - bound / Math.sqrt(3)) < 0.1 * bound, `std ${std}`);
  assert.ok((await l1.b.toFloat32()).every((v) => v === 0));
  assert.deepEqual(await make(5).a!.toFloat32(), a);
  assert.notDeepEqual(await make(6).a!.toFloat32(), a);
  assert.equal(l1.scale, 2);
  assert.equal(new QLoRALinear(w(), { lora: { r: 16, alpha: 16, useRslora: true } }).scale, 4);
  gpu.destroy();
});

Deno.test("QLoRALinear: forward/backward match float64; grads accumulate until zeroGrad; dropout repeats by seed", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(21);
  const [M, N, K, r] = [6, 24, 40, 4];
  const { w, deq } = randomQuantized(gpu, rng, N, K, { label: "proj.weight" });
  const biasHost = rng.normalArray(N);
  const layer = new QLoRALinear(w, {
    path: "proj",
    lora: { r, alpha: 8, dropout: 0.2, seed: 3 },
    bias: Tensor.fromArray(gpu, biasHost, [N]),
  });
  assert.ok(layer.hasAdapter());
  assert.deepEqual([layer.path, layer.r, layer.inFeatures, layer.outFeatures], ["proj", r, K, N]);
  const b = rng.normalArray(N * r);
  layer.b.write(b);
  const a = await layer.a.toFloat32();
  const x = rng.normalArray(M * K);
  const dy = rng.normalArray(M * N);
  const tx = Tensor.fromArray(gpu, x, [M, K]);
  const tdy = Tensor.fromArray(gpu, dy, [M, N]);
  const L: LayerRef = { M, N, K, r, scale: 2, p: 0.2, seed: 99, bias: Float64Array.from(biasHost) };
  const { y, saved } = layer.forward(tx, { seed: 99 });
  assert.equal(saved, null); // nothing kept unless asked
  const ref = refForward(L, x, deq, a, b);
  const yHost = await y.toFloat32();
  assertClose(yHost, ref.y, tol(ref.y), "y");
  // Same seed, same mask; another seed, another one; no seed: inference, no dropout.
  assert.deepEqual(await layer.forward(tx, { seed: 99 }).y.toFloat32(), yHost);
  assert.notDeepEqual(await layer.forward(tx, { seed: 100 }).y.toFloat32(), yHost);
  const noDrop = refForward({ ...L, p: 0 }, x, deq, a, b);
  assertClose(await layer.forward(tx).y.toFloat32(), noDrop.y, tol(noDrop.y), "inference y");
  const g = refBackward(L, dy, x, deq, a, b);
  for (let step = 1; step <= 2; step++) {
    const s: QLoRASaved = layer.forward(tx, { seed: 99, save: true }).saved!;
    assert.equal(s.x, tx);
    assertClose(await s.xa!.toFloat32(), ref.xa, tol(ref.xa), "saved xa");
    const dx = layer.backward(tdy, s)!;
    assertClose(await dx.toFloat32(), g.dx, tol(g.dx), "dx");
    assertClose(await layer.gradA.toFloat32(), g.dA.map((v) => step * v), tol(g.dA), `gradA after ${step}`);
    assertClose(await layer.gradB.toFloat32(), g.dB.map((v) => step * v), tol(g.dB), `gradB after ${step}`);
  }
  layer.zeroGrad();
  assert.ok((await layer.gradA.toFloat32()).every((v) => v === 0));
  assert.equal(layer.backward(tdy, layer.forward(tx, { seed: 99, save: true }).saved!, false), null);
  assertClose(await layer.gradB.toFloat32(), g.dB, tol(g.dB), "gradB after zeroGrad");
  layer.destroy();
  gpu.destroy();
});

Deno.test("QLoRALinear: a recomputed context gives the saved one's xa and gradients bit for bit", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(4);
  const [M, N, K, r] = [20, 16, 48, 3];
  const layer = new QLoRALinear(randomQuantized(gpu, rng, N, K).w, { lora: { r, dropout: 0.3, seed: 2 } });
  assert.ok(layer.hasAdapter());
  layer.b.write(rng.normalArray(N * r));
  const tx = Tensor.fromArray(gpu, rng.normalArray(M * K), [M, K]);
  const tdy = Tensor.fromArray(gpu, rng.normalArray(M * N), [M, N]);
  const run = async (saved: QLoRASaved) => {
    layer.zeroGrad();
    const xa = await saved.xa!.toFloat32();
    const dx = await layer.backward(tdy, saved)!.toFloat32();
    return { xa, dx, dA: await layer.gradA.toFloat32(), dB: await layer.gradB.toFloat32() };
  };
  for (const seed of [7, null]) {
    const kept = await run(layer.forward(tx, { seed, save: true }).saved!);
    const again = layer.recompute(tx, seed);
    assert.equal(again.seed, seed);
    assert.deepEqual(await run(again), kept, `seed ${seed}`);
  }
  // Dropping a context: the caller frees its xa, and the activations go back to where they were.
  await gpu.sync();
  const held = gpu.budget.report().byClass.activations;
  layer.recompute(tx, 7).xa!.destroy();
  layer.forward(tx, { seed: 7 }).y.destroy();
  await gpu.sync();
  assert.equal(gpu.budget.report().byClass.activations, held);
  layer.destroy();
  gpu.destroy();
});

Deno.test("QLoRALinear: a kept checkpoint (XA) serves the recompute bit for bit, with no down product", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(5);
  const [M, N, K, r] = [20, 16, 48, 3];
  const layer = new QLoRALinear(randomQuantized(gpu, rng, N, K).w, { lora: { r, dropout: 0.3, seed: 2 } });
  assert.ok(layer.hasAdapter());
  layer.b.write(rng.normalArray(N * r));
  const tx = Tensor.fromArray(gpu, rng.normalArray(M * K), [M, K]);
  const full = layer.forward(tx, { seed: 7, save: true });
  const ck = layer.forward(tx, { seed: 7, keepCheckpoint: true });
  assert.equal(ck.saved, null);
  assert.deepEqual(await ck.y.toFloat32(), await full.y.toFloat32());
  assert.deepEqual(await ck.checkpoint!.toFloat32(), await full.saved!.xa!.toFloat32());
  // A forward given the checkpoint: the same y, its context owns the checkpoint, and no dropout product ran.
  const counter = countGpuCalls();
  const again = layer.forward(tx, { seed: 7, save: true, checkpoint: ck.checkpoint });
  const fwdCounts = counter.take();
  assert.equal(again.saved!.xa, ck.checkpoint);
  assert.deepEqual(await again.y.toFloat32(), await full.y.toFloat32());
  assert.ok(![...fwdCounts.byKernel.keys()].some((k) => k.includes('"DROP":1')), "the down product with dropout");
  // The recompute given a checkpoint does no GPU work.
  const kept = layer.forward(tx, { seed: 7, keepCheckpoint: true }).checkpoint!;
  counter.take();
  const saved = layer.recompute(tx, 7, kept);
  assert.equal(counter.take().dispatches, 0);
  counter.stop();
  assert.deepEqual(saved, { x: tx, xa: kept, seed: 7 });
  assert.throws(
    () => layer.forward(tx, { seed: 7, checkpoint: tx }),
    /qlinear ".*": kept XA "tensor" is \[20,48\] f32, expected \[20,3\] f32/,
  );
  // Frozen-only: nothing to keep.
  const frozen = new QLoRALinear(randomQuantized(gpu, rng, N, K).w);
  assert.equal(frozen.forward(tx, { seed: 7, keepCheckpoint: true }).checkpoint, null);
  [frozen, layer].forEach((l) => l.destroy());
  gpu.destroy();
});

Deno.test("QLoRALinear: frozen-only (no adapter) computes x·deq(W)ᵀ + b and dX = dY·deq(W), nothing to train", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(8);
  const [M, N, K] = [5, 24, 40];
  const { w, deq } = randomQuantized(gpu, rng, N, K, { label: "model.layers.0.mlp.up_proj.weight" });
  const biasHost = rng.normalArray(N);
  const layer = new QLoRALinear(w, { lora: null, bias: Tensor.fromArray(gpu, biasHost, [N]) });
  assert.equal(layer.hasAdapter(), false);
  assert.equal(layer.path, "model.layers.0.mlp.up_proj.weight"); // default: the weight's label
  assert.deepEqual([layer.a, layer.b, layer.gradA, layer.gradB], [null, null, null, null]);
  assert.deepEqual([layer.r, layer.scale, layer.dropout], [0, 0, 0]);
  const x = rng.normalArray(M * K);
  const dy = rng.normalArray(M * N);
  const tx = Tensor.fromArray(gpu, x, [M, K]);
  const L: LayerRef = { M, N, K, r: 1, scale: 0, p: 0, seed: 0, bias: Float64Array.from(biasHost) };
  const zeros = new Float64Array(N + K);
  const ref = refForward(L, x, deq, zeros, zeros);
  // A seed changes nothing without an adapter.
  const { y, saved } = layer.forward(tx, { seed: 5, save: true });
  assertClose(await y.toFloat32(), ref.y, tol(ref.y), "y");
  assert.deepEqual(await layer.forward(tx).y.toFloat32(), await y.toFloat32());
  assert.deepEqual(saved, { x: tx, xa: null, seed: 5 });
  assert.deepEqual(layer.recompute(tx, 5), saved);
  const g = refBackward(L, dy, x, deq, zeros, zeros);
  const dx = layer.backward(Tensor.fromArray(gpu, dy, [M, N]), saved!)!;
  assertClose(await dx.toFloat32(), g.dx, tol(g.dx), "dx");
  assert.equal(layer.backward(Tensor.fromArray(gpu, dy, [M, N]), saved!, false), null);
  layer.zeroGrad(); // a no-op
  layer.destroy();
  gpu.destroy();
});

Deno.test("QLoRALinear: addTo adds y and dX into existing tensors (with an adapter and frozen-only)", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(12);
  const [M, N, K] = [20, 24, 40];
  const x = Tensor.fromArray(gpu, rng.normalArray(M * K), [M, K]);
  const dy = rng.normalArray(M * N);
  const [priorY, priorDx] = [rng.normalArray(M * N), rng.normalArray(M * K)];
  for (const lora of [{ r: 4, dropout: 0.2 }, null]) {
    const layer = new QLoRALinear(randomQuantized(gpu, rng, N, K).w, { lora });
    if (layer.hasAdapter()) layer.b.write(rng.normalArray(N * 4)); // B = 0 would hide the adapter's terms
    const plain = layer.forward(x, { seed: 3, save: true });
    const y = await plain.y.toFloat32();
    const dx = await layer.backward(Tensor.fromArray(gpu, dy, [M, N]), plain.saved!)!.toFloat32();
    const into = Tensor.fromArray(gpu, priorY, [M, N]);
    const added = layer.forward(x, { seed: 3, save: true, addTo: into });
    assert.equal(added.y, into);
    // One f32 addition of the prior to each value: the same bits as adding afterwards.
    assert.deepEqual(await into.toFloat32(), y.map((v, i) => v + priorY[i]), `y, adapter ${!!lora}`);
    const dxInto = Tensor.fromArray(gpu, priorDx, [M, K]);
    assert.equal(layer.backward(Tensor.fromArray(gpu, dy, [M, N]), added.saved!, true, dxInto), dxInto);
    assert.deepEqual(await dxInto.toFloat32(), dx.map((v, i) => v + priorDx[i]), `dx, adapter ${!!lora}`);
    layer.destroy();
  }
  gpu.destroy();
});

Deno.test("QLoRALinear: bad rank, dropout or shapes are clear errors naming the module", async () => {
  const gpu = await requestGpu();
  const { w } = randomQuantized(gpu, new Rng(1), 8, 16, { label: "o_proj" });
  assert.throws(
    () => new QLoRALinear(w, { lora: { r: 9 } }),
    /QLoRALinear "o_proj" \[8,16\]: rank 9 must be an integer in \[1, 8\]/,
  );
  assert.throws(
    () => new QLoRALinear(w, { path: "model.layers.3.self_attn.o_proj", lora: { r: 2, dropout: -0.1 } }),
    /QLoRALinear "model.layers.3.self_attn.o_proj": dropout -0.1 is outside \[0, 1\)/,
  );
  const layer = new QLoRALinear(w, { lora: { r: 2 } });
  const x = Tensor.empty(gpu, [3, 12], { label: "x" });
  assert.throws(() => layer.forward(x, { seed: 1 }), /qlinear "o_proj" \[8,16\]: input "x" is \[3,12\] f32/);
  const saved = layer.forward(Tensor.empty(gpu, [3, 16]), { seed: 1, save: true }).saved!;
  const dy = Tensor.empty(gpu, [4, 8], { label: "dy" });
  assert.throws(() => layer.backward(dy, saved), /output gradient "dy" is \[4,8\] f32, expected \[3,8\]/);
  layer.destroy();
  gpu.destroy();
});

Deno.test("QLoRALinear: adapter tensors the caller provides (arena views) give its own adapter's bits; it frees none", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(6);
  const [M, N, K, r] = [5, 24, 40, 4];
  const { w } = randomQuantized(gpu, rng, N, K, { label: "proj.weight" });
  const own = new QLoRALinear(w, { lora: { r, dropout: 0.1, seed: 9 } });
  // Parameters and gradients in two arenas, as the model packs them (a kernel cannot read and write one buffer).
  const specs = (n: number) => [[r, K], [N, r]].map((shape, i) => ({ shape, label: `t${n + i}` }));
  const arena = new TensorArena(gpu, specs(0));
  const grads = new TensorArena(gpu, specs(2));
  for (const t of [...arena.tensors, ...grads.tensors]) t.write(new Float32Array(t.size).fill(7)); // A seeded, rest 0
  const [a, b] = arena.tensors;
  const [gradA, gradB] = grads.tensors;
  const { w: w2 } = randomQuantized(gpu, new Rng(6), N, K, { label: "proj.weight" });
  const packed = new QLoRALinear(w2, { lora: { r, dropout: 0.1, seed: 9 }, adapterTensors: { a, b, gradA, gradB } });
  assert.ok(own.hasAdapter() && packed.hasAdapter());
  assert.equal(packed.a, a);
  const bHost = rng.normalArray(N * r);
  own.b.write(bHost);
  packed.b.write(bHost);
  const x = Tensor.fromArray(gpu, rng.normalArray(M * K), [M, K]);
  const dy = Tensor.fromArray(gpu, rng.normalArray(M * N), [M, N]);
  const run = async (l: QLoRALinear & { gradA: Tensor; gradB: Tensor }) => {
    const { y, saved } = l.forward(x, { seed: 3, save: true });
    const dx = l.backward(dy, saved!)!;
    return [await y.toFloat32(), await dx.toFloat32(), await l.gradA.toFloat32(), await l.gradB.toFloat32()];
  };
  assert.deepEqual(await run(packed), await run(own));
  packed.zeroGrad();
  assert.ok((await gradB.toFloat32()).every((v) => v === 0));
  packed.destroy();
  assert.deepEqual(await a.toFloat32(), await own.a.toFloat32(), "the arena still holds A");
  const { w: w3 } = randomQuantized(gpu, rng, N, K, { label: "o_proj" });
  assert.throws(
    () => new QLoRALinear(w3, { lora: { r }, adapterTensors: { a, b: a, gradA, gradB } }),
    /QLoRALinear "o_proj": adapterTensors.b "t0" is \[4,40\] f32, expected \[24,4\] f32/,
  );
  arena.destroy();
  grads.destroy();
  own.destroy();
  gpu.destroy();
});
