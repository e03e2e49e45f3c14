import assert from "node:assert/strict";
import { accountingGpu, requestGpu, TensorArena } from "../lib/gpu/mod.ts";

Deno.test("TensorArena: views at multiples of 256 elements in order, zero padding, one clear per buffer", async () => {
  const gpu = await requestGpu();
  const arena = new TensorArena(gpu, [
    { shape: [3, 100], label: "a" },
    { shape: [256], label: "b" },
    { shape: [1], label: "c" },
  ], { class: "weights", label: "demo" });
  const [a, b, c] = arena.tensors;
  assert.deepEqual(arena.tensors.map((t) => [t.label, t.byteOffset, t.isView]), [
    ["a", 0, true],
    ["b", 2048, true],
    ["c", 3072, true],
  ]);
  assert.equal(arena.buffers.length, 1);
  assert.equal(arena.buffers[0].size, 4096);
  a.write(new Float32Array(300).fill(1));
  b.write(new Float32Array(256).fill(2));
  c.write(new Float32Array([3]));
  const all = new Float32Array(await gpu.read(arena.buffers[0]));
  assert.ok(all.subarray(0, 300).every((v) => v === 1));
  assert.ok(all.subarray(300, 512).every((v) => v === 0), "padding after a stays zero");
  assert.ok(all.subarray(512, 768).every((v) => v === 2));
  assert.deepEqual([...all.subarray(768, 770)], [3, 0]);
  const clears: [GPUBuffer, number | undefined, number | undefined][] = [];
  const clear = gpu.clear.bind(gpu);
  gpu.clear = (buffer, offset, size) => (clears.push([buffer, offset, size]), clear(buffer, offset, size));
  arena.clear();
  gpu.clear = clear;
  assert.deepEqual(clears, [[arena.buffers[0], undefined, undefined]]);
  assert.ok(new Float32Array(await gpu.read(arena.buffers[0])).every((v) => v === 0));
  for (const t of arena.tensors) t.destroy(); // views free nothing
  assert.deepEqual([...await c.toFloat32()], [0]);
  arena.destroy();
  assert.equal(arena.buffers.length, 0);
});

Deno.test("TensorArena: buffers split at maxBufferSize and accounted by class; a tensor past it is refused by name", () => {
  const { gpu } = accountingGpu({ limits: { maxBufferSize: 2 ** 20, maxStorageBufferBindingSize: 2 ** 20 } });
  const before = gpu.budget.report().byClass.optimizer;
  const arena = new TensorArena(
    gpu,
    [131000, 65536, 131072, 10].map((n, i) => ({ shape: [n], label: `t${i}` })),
    { class: "optimizer", label: "grads" },
  );
  // 512 KiB + 256 KiB fit the first buffer; 512 KiB + 1 KiB the second (1 MiB each at most).
  assert.equal(arena.buffers.length, 2);
  assert.deepEqual(arena.buffers.map((b) => b.size), [786432, 525312]);
  assert.deepEqual(arena.tensors.map((t) => [arena.buffers.indexOf(t.buffer), t.byteOffset]), [
    [0, 0],
    [0, 524288],
    [1, 0],
    [1, 524288],
  ]);
  assert.equal(gpu.budget.report().byClass.optimizer - before, 786432 + 525312);
  arena.destroy();
  assert.equal(gpu.budget.report().byClass.optimizer, before);
  assert.throws(
    () => new TensorArena(gpu, [{ shape: [2, 131100], label: "wide" }]),
    /TensorArena: tensor "wide" \[2,131100\] needs 1049600 bytes, past maxBufferSize \(1048576\)/,
  );
});

Deno.test("TensorArena: no specs, no buffers", async () => {
  const gpu = await requestGpu();
  const arena = new TensorArena(gpu, []);
  assert.deepEqual([arena.tensors.length, arena.buffers.length], [0, 0]);
  arena.clear();
  arena.destroy();
});
