import assert from "node:assert/strict";
import { formatBytes, MemoryBudget, parseBytes } from "../mod.ts";

Deno.test("parseBytes: plain numbers and units; bad input names the value", () => {
  assert.equal(parseBytes("1048576"), 1048576);
  assert.equal(parseBytes("991904B"), 991904);
  assert.equal(parseBytes("512MiB"), 512 * 2 ** 20);
  assert.equal(parseBytes("6GiB"), 6 * 2 ** 30);
  assert.equal(parseBytes("1.5GB"), 1.5e9);
  assert.throws(() => parseBytes("6 parsecs"), /"6 parsecs"/);
  assert.throws(() => parseBytes(-1), /-1/);
  assert.equal(formatBytes(3 * 2 ** 20), "3.00 MiB");
});

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
