import assert from "node:assert/strict";
import { MemoryBudget } from "../mod.ts";

Deno.test("budget: an evictor is asked for exactly the shortfall", async () => {
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter!.requestDevice();
  const budget = new MemoryBudget(device, 10_000);
  const held = budget.createBuffer({ size: 8000, usage: GPUBufferUsage.STORAGE, class: "optimizer", label: "p" });
  const asked: number[] = [];
  budget.addEvictor({
    evictableBytes: () => (budget.holds(held) ? 8000 : 0),
    evict: (bytes) => {
      asked.push(bytes);
      budget.free(held);
      return 8000;
    },
  });
  budget.createBuffer({ size: 4000, usage: GPUBufferUsage.STORAGE, class: "activations", label: "a" });
  assert.deepEqual(asked, [2000]);
  assert.equal(budget.report().current, 4000);
  assert.equal(budget.report().peak, 8000);
  device.destroy();
});

Deno.test("budget: staging buffers are reported apart, outside the limit; reserveAsync uses evictAsync", async () => {
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter!.requestDevice();
  const budget = new MemoryBudget(device, 10_000);
  const st = budget.createStagingBuffer({
    size: 50_000,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    label: "staging",
  });
  assert.equal(budget.report().staging, 50_000);
  assert.equal(budget.report().current, 0);
  const held = budget.createBuffer({ size: 8000, usage: GPUBufferUsage.STORAGE, class: "optimizer", label: "p" });
  let dirty = true;
  budget.addEvictor({
    evictableBytes: () => (dirty ? 0 : 8000),
    evict: () => {
      if (dirty || !budget.holds(held)) return 0;
      budget.free(held);
      return 8000;
    },
    evictAsync: async (bytes) => {
      await Promise.resolve(); // a write-back would await a mapping here
      dirty = false;
      return budget.holds(held) && bytes > 0 ? (budget.free(held), 8000) : 0;
    },
    pagingStats: () => ({ pagesResident: 1, pagesOnHost: 2, bytesPagedIn: 3, bytesPagedOut: 4 }),
  });
  assert.throws(
    () => budget.createBuffer({ size: 4000, usage: GPUBufferUsage.STORAGE, class: "activations", label: "a" }),
    /"a" \(activations\) needs 3\.91 KiB but the limit is 9\.77 KiB.*optimizer 7\.81 KiB/,
  );
  await budget.reserveAsync(4000, "a");
  budget.createBuffer({ size: 4000, usage: GPUBufferUsage.STORAGE, class: "activations", label: "a" });
  const r = budget.report();
  assert.deepEqual(r.byClass, { weights: 0, activations: 4000, optimizer: 0, scratch: 0 });
  assert.deepEqual(r.paging, { pagesResident: 1, pagesOnHost: 2, bytesPagedIn: 3, bytesPagedOut: 4 });
  assert.ok(r.peak <= r.limit);
  budget.free(st);
  assert.equal(budget.report().staging, 0);
  // Lowering the limit below what is held (and cannot be evicted) is refused and leaves the limit as it was.
  assert.throws(() => budget.setLimit(1000), /lowering the limit to 1000 B/);
  assert.equal(budget.limit, 10_000);
  budget.setLimit("4000B");
  assert.equal(budget.limit, 4000);
  device.destroy();
});
