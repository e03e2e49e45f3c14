import assert from "node:assert/strict";
import { GpuError, OutOfBudgetError, requestGpu, Tensor } from "../mod.ts";
import { grid2d } from "../lib/gpu/mod.ts";

Deno.test("gpu: an elementwise kernel over a 2-D grid writes every element", async () => {
  const gpu = await requestGpu();
  // More workgroups than fit in one dimension when the limit is small: force the 2-D path with maxPerDim 7.
  const n = 256 * 20 + 3;
  const buf = gpu.createBuffer(n * 4, "scratch", "filled");
  const x1 = gpu.createBuffer(n * 4, "scratch", "addend");
  gpu.write(x1, new Float32Array(n).fill(-1.25));
  const [x, y] = grid2d(Math.ceil(n / 256), 7);
  assert.ok(y > 1);
  // residual_add's uniforms: n (u32), alpha (f32): buf += 1 · addend.
  const params = new Uint32Array([n, 0]);
  new Float32Array(params.buffer)[1] = 1;
  gpu.dispatch({ kernel: "residual_add", bindings: [buf, x1, params], workgroups: [x, y] });
  const out = await gpu.readF32(buf);
  assert.equal(out.length, n);
  assert.ok(out.every((v) => v === -1.25));
  gpu.destroy();
});

Deno.test("gpu: a bad binding is thrown as a GpuError naming the kernel", async () => {
  const gpu = await requestGpu();
  const buf = gpu.createBuffer(16, "scratch", "small");
  // Missing the uniform binding: validation fails; the error must name the kernel.
  gpu.dispatch({ kernel: "residual_add", bindings: [buf, buf], workgroups: 1 });
  await assert.rejects(gpu.sync(), (e: unknown) => e instanceof GpuError && /residual_add/.test(e.message));
  gpu.destroy();
});

Deno.test("gpu: clear zeroes a buffer or a byte range of it, in order with dispatches", async () => {
  const gpu = await requestGpu();
  const buf = gpu.createBuffer(16, "scratch", "cleared");
  gpu.write(buf, new Float32Array([1, 2, 3, 4]));
  gpu.clear(buf, 4, 8);
  assert.deepEqual([...await gpu.readF32(buf)], [1, 0, 0, 4]);
  gpu.clear(buf);
  assert.deepEqual([...await gpu.readF32(buf)], [0, 0, 0, 0]);
  gpu.destroy();
});

Deno.test("gpu: maxBindingBytes defaults to the device's binding limit and may only lower it", async () => {
  const gpu = await requestGpu();
  assert.equal(gpu.maxBindingBytes, gpu.limits.maxStorageBufferBindingSize);
  gpu.destroy();
  const small = await requestGpu({ maxBindingBytes: 4096 });
  assert.equal(small.maxBindingBytes, 4096);
  small.destroy();
  await assert.rejects(requestGpu({ maxBindingBytes: 0 }), /maxBindingBytes 0/);
});

Deno.test("gpu: unknown kernel is a clear error", async () => {
  const gpu = await requestGpu();
  assert.throws(() => gpu.shaderSource("nope"), /Unknown kernel "nope"/);
  gpu.destroy();
});

Deno.test("tensor: f16 and bf16 round trips; wrong data size is rejected", async () => {
  const gpu = await requestGpu();
  const h = Tensor.fromArray(gpu, new Float16Array([0.5, -2, 3]), [3]);
  assert.deepEqual([...await h.toFloat32()], [0.5, -2, 3]);
  const b = Tensor.fromArray(gpu, new Uint16Array([0x3f80, 0x4040]), [2], { dtype: "bf16" });
  assert.deepEqual([...await b.toFloat32()], [1, 3]);
  assert.throws(() => Tensor.fromArray(gpu, new Float32Array(5), [2, 3], { label: "w" }), /Tensor "w".*\[2,3\]/);
  gpu.destroy();
});

Deno.test("budget: allocations past the limit throw with a per-class breakdown; peak is tracked", async () => {
  const gpu = await requestGpu({ gpuMemory: "2MiB" });
  const base = gpu.budget.report().current; // the uniform ring
  const a = Tensor.empty(gpu, [1024], { class: "weights", label: "w" });
  assert.throws(
    () => Tensor.empty(gpu, [1 << 20], { class: "activations", label: "big" }),
    (e: unknown) =>
      e instanceof OutOfBudgetError && /"big" \(activations\)/.test(e.message) && /weights 4\.00 KiB/.test(e.message),
  );
  a.destroy();
  const r = gpu.budget.report();
  assert.equal(r.current, base);
  assert.equal(r.peak, base + 4096);
  assert.equal(r.peakByClass.weights, 4096);
  gpu.destroy();
});
