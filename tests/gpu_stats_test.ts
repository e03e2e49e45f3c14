import assert from "node:assert/strict";
import { requestGpu, Tensor } from "../mod.ts";
import { formatProfile } from "../lib/gpu/mod.ts";

const add = (acc: Tensor, x: Tensor) =>
  acc.gpu.dispatch({
    kernel: "residual_add",
    bindings: [acc.buffer, x.buffer, new Uint32Array([4, 0])],
    workgroups: 1,
  });

Deno.test("gpu stats: repeated dispatches share one pass, one bind group and one uniform upload; free does not submit", async () => {
  const gpu = await requestGpu();
  const acc = Tensor.empty(gpu, [4], { label: "acc" });
  const x = Tensor.fromArray(gpu, new Float32Array([1, 2, 3, 4]), [4], { label: "x" });
  await gpu.sync();
  gpu.resetStats();
  for (let i = 0; i < 10; i++) add(acc, x);
  const tmp = Tensor.empty(gpu, [4], { label: "tmp" });
  add(tmp, x);
  tmp.destroy();
  const s = gpu.stats();
  assert.deepEqual([s.dispatches, s.passes, s.submits, s.bindGroupsCreated, s.buffersCreated], [11, 1, 0, 2, 1]);
  await gpu.sync();
  assert.equal(gpu.stats().writeBuffers, 1);
  gpu.resetStats();
  add(acc, x);
  await gpu.sync();
  assert.deepEqual([gpu.stats().bindGroupsCreated, gpu.stats().writeBuffers], [0, 0]);
  // Residual add with alpha 0 bits: acc += 0 * x, so acc stays zero; the values are what the kernel computes.
  assert.deepEqual([...await acc.toFloat32()], [0, 0, 0, 0]);
  gpu.destroy();
});

Deno.test("gpu profile: per-kernel calls, GPU time where timestamps exist, counts per step", async () => {
  const gpu = await requestGpu();
  const acc = Tensor.empty(gpu, [4], { label: "acc" });
  const x = Tensor.empty(gpu, [4], { label: "x" });
  const p = await gpu.profile(() => {
    for (let i = 0; i < 6; i++) add(acc, x);
  }, 2);
  assert.equal(p.kernels.length, 1);
  assert.equal(p.kernels[0].calls, 3);
  assert.equal(p.stats.dispatches, 3);
  assert.equal(p.timer, gpu.features.timestampQuery ? "timestamp" : "n/a");
  if (p.timer === "timestamp") assert.ok(p.kernels[0].gpuMs! >= 0 && p.kernels[0].share === 1);
  assert.match(formatProfile(p), /residual_add/);
  await assert.rejects(gpu.stopProfile(), /no profile is running/);
  gpu.destroy();
});
