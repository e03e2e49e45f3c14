import assert from "node:assert/strict";
import { AdamW, LlamaModel, MemoryBudget, OutOfBudgetError, requestGpu, Rng } from "../mod.ts";
import { BufferPool } from "../lib/gpu/mod.ts";
import { clipGradNorm } from "../lib/kernels/mod.ts";
import { writeTinyLlama } from "../lib/testing/mod.ts";

const STORAGE = GPUBufferUsage.STORAGE;
const act = (size: number, label = "a") => ({
  size,
  usage: STORAGE,
  class: "activations" as const,
  label,
  pooled: true,
});

Deno.test("pool: in-flight buffers wait for the submit; the oldest ready buffer is taken; release is least recently freed first", async () => {
  const device = await (await navigator.gpu.requestAdapter())!.requestDevice();
  const pool = new BufferPool();
  const k = BufferPool.key(64, STORAGE);
  const [a, b, c] = [0, 1, 2].map(() => device.createBuffer({ size: 64, usage: STORAGE }));
  pool.put(b, k, 64, false);
  pool.put(a, k, 64, false);
  pool.put(c, k, 64, true);
  assert.deepEqual([pool.bytes, pool.count], [192, 3]);
  // b was pooled first: it is taken first whatever the order of later frees.
  assert.equal(pool.take(k), b);
  assert.equal(pool.take(k), a);
  assert.equal(pool.take(k), undefined, "c is in flight");
  assert.equal(pool.take(BufferPool.key(128, STORAGE)), undefined, "exact sizes only");
  pool.submitted();
  assert.equal(pool.take(k), c);
  pool.put(a, k, 64, false);
  pool.put(b, k, 64, false);
  pool.put(c, k, 64, true);
  assert.deepEqual(pool.release(100).map((r) => [r.buffer, r.inFlight]), [[a, false], [b, false]]);
  assert.deepEqual(pool.release(Infinity).map((r) => [r.buffer, r.inFlight]), [[c, true]]);
  assert.deepEqual([pool.bytes, pool.count], [0, 0]);
  // Trimming for a new key keeps the pool within the cap; a trimmed key asked for again widens the cap by its size.
  const kb = BufferPool.key(64, STORAGE | GPUBufferUsage.COPY_SRC);
  pool.put(a, k, 64, false);
  pool.put(b, kb, 64, false);
  assert.deepEqual(pool.trimFor(BufferPool.key(32, STORAGE), 32, 64).map((r) => [r.buffer, r.key]), [[a, k]]);
  pool.put(c, BufferPool.key(32, STORAGE), 32, false);
  assert.deepEqual(pool.trimFor(k, 64, 64), [], "the slack now covers one more 64-byte buffer");
  assert.deepEqual(pool.release(Infinity).map((r) => r.buffer), [b, c]);
  device.destroy();
});

Deno.test("pool: the budget counts pooled bytes, releases them before evicting or failing, and trims to the in-use high-water mark", async () => {
  const device = await (await navigator.gpu.requestAdapter())!.requestDevice();
  const budget = new MemoryBudget(device, 10_000);
  const asked: number[] = [];
  budget.addEvictor({ evictableBytes: () => 0, evict: (n) => (asked.push(n), 0) });
  const a = budget.createBuffer(act(4000));
  budget.free(a);
  let r = budget.report();
  assert.deepEqual([r.current, r.pooled, r.byClass.activations, r.buffers], [4000, 4000, 0, 0]);
  assert.deepEqual([r.peak, r.peakInUse], [4000, 4000]);
  assert.equal(budget.available(), 10_000, "pooled bytes count as free");
  // Another size does not fit beside the pool: the pool goes, the evictor is not asked.
  const b = budget.createBuffer(act(8000));
  assert.deepEqual(asked, []);
  r = budget.report();
  assert.deepEqual([r.current, r.pooled, r.peak, r.peakInUse], [8000, 0, 8000, 8000]);
  budget.free(b);
  // Past everything: the pool is released, the evictor asked, then the error.
  assert.throws(() => budget.createBuffer(act(12_000, "huge")), OutOfBudgetError);
  assert.deepEqual([asked, budget.report().pooled, budget.report().current], [[2000], 0, 0]);
  // Non-pooled classes are destroyed on free; pooled ones come back (in-flight ones after submitted()).
  budget.free(budget.createBuffer({ size: 100, usage: STORAGE, class: "weights", label: "w" }));
  assert.equal(budget.report().pooled, 0);
  const c = budget.createBuffer(act(400));
  budget.free(c, true);
  assert.equal(budget.reuse(act(400)), null);
  budget.submitted();
  assert.equal(budget.reuse(act(400)), c);
  // With no limit, a new shape first trims idle buffers to the high-water mark of pooled buffers in use (400 here),
  // least recently freed first: creating the 392-byte buffer released the 400-byte one.
  const unlimited = new MemoryBudget(device);
  for (const size of [400, 396, 392]) unlimited.free(unlimited.createBuffer(act(size)));
  assert.equal(unlimited.report().pooled, 396 + 392);
  device.destroy();
});

Deno.test("pool: Gpu reuses a freed activation buffer only after the submit, cleared unless told it is overwritten", async () => {
  const gpu = await requestGpu();
  const x = gpu.createBuffer(8, "scratch", "x");
  const a = gpu.createBuffer(8, "activations", "a");
  gpu.write(a, new Float32Array([1, 2]));
  // Recorded work uses a: freed now, it is not handed out before that work is submitted.
  gpu.dispatch({ kernel: "residual_add", bindings: [a, x, new Uint32Array([2, 0])], workgroups: 1 });
  gpu.free(a);
  const fresh = gpu.createBuffer(8, "activations", "fresh");
  assert.notEqual(fresh, a);
  gpu.flush();
  const b = gpu.createBuffer(8, "activations", "b");
  assert.equal(b, a);
  // The clear runs before work recorded after it, so the kernel's result stands.
  gpu.write(x, new Float32Array([5, 6]));
  const one = new Uint32Array([2, 0]);
  new Float32Array(one.buffer)[1] = 1;
  gpu.dispatch({ kernel: "residual_add", bindings: [b, x, one], workgroups: 1 });
  assert.deepEqual([...await gpu.readF32(b)], [5, 6]);
  gpu.free(b);
  const kept = gpu.createBuffer(8, "activations", "kept", 0, false);
  assert.equal(kept, a);
  assert.deepEqual([...await gpu.readF32(kept)], [5, 6], "zero: false skips the clear");
  gpu.free(kept);
  assert.deepEqual([...await gpu.readF32(gpu.createBuffer(8, "activations", "zeroed"))], [0, 0]);
  // Weights are not pooled.
  const w = gpu.createBuffer(8, "weights", "w");
  gpu.free(w);
  assert.notEqual(gpu.createBuffer(8, "weights", "w2"), w);
  gpu.destroy();
});

Deno.test("pool: a steady-state training step of the tiny model creates no buffers, and bind groups only for AdamW", async () => {
  const gpu = await requestGpu();
  const dir = await Deno.makeTempDir();
  await writeTinyLlama(dir, { layers: 4, hidden: 64, heads: 4, kvHeads: 2, intermediate: 172, vocab: 260 });
  const model = await LlamaModel.load(gpu, dir, { lora: { r: 8, alpha: 16 } });
  await Deno.remove(dir, { recursive: true });
  const params = model.loraLayers().flatMap((l) => [
    { name: `${l.path}.lora_A`, param: l.a, grad: l.gradA },
    { name: `${l.path}.lora_B`, param: l.b, grad: l.gradB },
  ]);
  const opt = new AdamW(gpu, params, { lr: 1e-3 });
  const rng = new Rng(5);
  const T = 16;
  const ids = Int32Array.from({ length: T }, () => rng.int(260));
  const batch = { batchSize: 1, seqLen: T, inputIds: ids, labels: ids };
  const counts: [number, number][] = [];
  for (let step = 0; step < 4; step++) {
    await gpu.sync();
    gpu.resetStats();
    model.zeroGrad();
    for (let micro = 0; micro < 2; micro++) { // grad-accum 2
      await model.forwardBackward(batch, { gradScale: 1 / (2 * T), seed: 2 * step + micro });
    }
    await clipGradNorm(gpu, params.map((p) => p.grad), 1);
    await opt.step({ lr: 1e-3 });
    await gpu.sync();
    counts.push([gpu.stats().buffersCreated, gpu.stats().bindGroupsCreated]);
  }
  for (const [buffers, bindGroups] of counts.slice(2)) {
    assert.equal(buffers, 0, `buffers per step: ${counts.map((c) => c[0])}`);
    // AdamW's uniforms (bias corrections) change every step; every other bind group repeats.
    assert.ok(bindGroups <= params.length, `bind groups per step: ${counts.map((c) => c[1])}`);
  }
  assert.ok(gpu.budget.report().pooled > 0);
  opt.destroy();
  model.destroy();
  gpu.destroy();
});
