// The accounting-only device: buffers cost no memory but are accounted, host writes read back, limits hold.

import assert from "node:assert/strict";
import { accountingGpu, GPU_LIMIT_PRESETS } from "../lib/gpu/accounting.ts";
import { Tensor } from "../lib/gpu/tensor.ts";

const limits = { maxBufferSize: 2 ** 32, maxStorageBufferBindingSize: 2 ** 31 };

Deno.test("accounting: a small buffer reads back what the host wrote; a large one reads zeros", async () => {
  const { gpu } = accountingGpu({ limits });
  const t = Tensor.fromArray(gpu, new Float32Array([1, 2, 3]), [3]);
  assert.deepEqual([...await t.toFloat32()], [1, 2, 3]);
  gpu.clear(t.buffer, 4, 4);
  assert.deepEqual([...await t.toFloat32()], [1, 0, 3]);
  const big = Tensor.empty(gpu, [2 ** 20]);
  assert.equal((await big.toFloat32())[0], 0);
});

Deno.test("accounting: the ledger keys buffers and snapshots the peak; the budget limit applies", () => {
  const { gpu, ledger } = accountingGpu({ limits, gpuMemory: 4 * 2 ** 20, keyOf: (label) => label.split(".")[0] });
  ledger.resetPeak();
  const a = Tensor.empty(gpu, [2 ** 18], { label: "a.x" });
  a.destroy(); // to the buffer pool: still held until the pool lets it go
  assert.equal(ledger.now().a, 2 ** 20);
  gpu.budget.releasePool();
  Tensor.empty(gpu, [2 ** 17], { label: "b.y" });
  assert.equal(ledger.atPeak().a, 2 ** 20);
  assert.equal(ledger.now().a, 0);
  assert.equal(ledger.maxByKey().b, 2 ** 19);
  assert.throws(() => Tensor.empty(gpu, [2 ** 20], { label: "c" }), /budget exceeded/);
});

Deno.test("accounting: presets name their memory; maxBufferSize is enforced naming the buffer", () => {
  assert.equal(GPU_LIMIT_PRESETS["a6000-48gb"].memory, 48 * 2 ** 30);
  const { gpu } = accountingGpu({ limits: { maxBufferSize: 2 ** 20, maxStorageBufferBindingSize: 2 ** 20 } });
  assert.throws(() => Tensor.empty(gpu, [2 ** 19], { label: "w" }), /"w" of 2097152 bytes.*maxBufferSize \(1048576/);
});
