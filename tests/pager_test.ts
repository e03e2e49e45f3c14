import assert from "node:assert/strict";
import { OutOfBudgetError, requestGpu } from "../mod.ts";
import { Pager } from "../lib/gpu/mod.ts";

const PAGE = 64 << 10;

function pattern(page: number): Uint8Array {
  return Uint8Array.from({ length: PAGE }, (_, i) => (i * 7 + page * 31) & 0xff);
}

Deno.test("pager: pages travel in, LRU pages leave when the budget needs room, host copies stay intact", async () => {
  const probe = await requestGpu();
  const base = probe.budget.report().current; // the uniform ring
  probe.destroy();
  const gpu = await requestGpu({ gpuMemory: base + 3 * PAGE });
  const pager = new Pager(gpu, { pageSize: PAGE, stagingSize: 2 * PAGE });
  const buf = pager.allocate("pages", 6);
  for (let p = 0; p < 6; p++) buf.hostPage(p).set(pattern(p));
  const slots = await pager.pageIn(buf, [0, 1, 2]);
  for (let p = 0; p < 3; p++) assert.deepEqual(new Uint8Array(await gpu.read(slots[p])), pattern(p));
  pager.release(buf, [0, 1, 2], false);
  await pager.pageIn(buf, [1]); // page 1 becomes the most recently used
  pager.release(buf, [1], false);
  const [s3] = await pager.pageIn(buf, [3]);
  assert.deepEqual(new Uint8Array(await gpu.read(s3)), pattern(3));
  pager.release(buf, [3], false);
  assert.deepEqual([0, 1, 2, 3].map((p) => pager.isResident(buf, p)), [false, true, true, true]);
  const stats = gpu.budget.report().paging;
  assert.equal(stats.pagesResident, 3);
  assert.equal(stats.pagesOnHost, 3);
  assert.equal(stats.bytesPagedIn, 4 * PAGE);
  assert.equal(stats.bytesPagedOut, 0); // clean pages leave without a write-back
  assert.ok(gpu.budget.report().peak <= gpu.budget.limit);
  pager.destroy();
  gpu.destroy();
});

Deno.test("pager: dirty pages are not dropped synchronously; reserveAsync writes them back first", async () => {
  const probe = await requestGpu();
  const base = probe.budget.report().current;
  probe.destroy();
  const gpu = await requestGpu({ gpuMemory: base + 2 * PAGE });
  const pager = new Pager(gpu, { pageSize: PAGE });
  const staging = gpu.budget.report().staging;
  const buf = pager.allocate("pages", 2);
  const slots = await pager.pageIn(buf, [0, 1]);
  slots.forEach((s, k) => gpu.write(s, new Float32Array(PAGE / 4).fill(k + 0.5)));
  pager.release(buf, [0, 1], true);
  assert.ok(pager.isDirty(buf, 0));
  assert.throws(
    () => gpu.createBuffer(PAGE, "activations", "acts"),
    (e: Error) => e instanceof OutOfBudgetError && /"acts" \(activations\) needs 64.00 KiB/.test(e.message),
  );
  await gpu.budget.reserveAsync(PAGE, "acts");
  const acts = gpu.createBuffer(PAGE, "activations", "acts");
  assert.deepEqual([pager.isResident(buf, 0), pager.isResident(buf, 1)], [false, true]);
  assert.deepEqual([...new Float32Array(buf.host.buffer, 0, 2)], [0.5, 0.5]);
  assert.equal(gpu.budget.report().paging.bytesPagedOut, PAGE);
  // Page 0 comes back with its written-back contents once there is room again.
  gpu.free(acts);
  const [s0] = await pager.pageIn(buf, [0]);
  assert.deepEqual([...new Float32Array(await gpu.read(s0, 0, 8))], [0.5, 0.5]);
  pager.release(buf, [0], false);
  await pager.pageOut(buf); // dirty page 1 written back; slots kept in the pool
  assert.deepEqual([pager.isResident(buf, 0), pager.isResident(buf, 1)], [false, false]);
  assert.deepEqual([...new Float32Array(buf.hostPage(1).slice(0, 8).buffer)], [1.5, 1.5]);
  assert.equal(gpu.budget.report().byClass.optimizer, 2 * PAGE);
  assert.equal(pager.evictableBytes(), 2 * PAGE);
  // The staging ring is fixed: no buffer per transfer (beyond Gpu.read's own readback buffer, made once).
  const readback = 1 << 16;
  assert.equal(gpu.budget.report().staging, staging + readback);
  assert.ok(gpu.budget.report().peak <= gpu.budget.limit);
  pager.destroy();
  assert.equal(gpu.budget.report().staging, readback);
  gpu.destroy();
});

Deno.test("pager: more pinned pages than fit, and bad sizes, are clear errors", async () => {
  const probe = await requestGpu();
  const base = probe.budget.report().current;
  probe.destroy();
  const gpu = await requestGpu({ gpuMemory: base + 2 * PAGE });
  const pager = new Pager(gpu, { pageSize: PAGE });
  const buf = pager.allocate("big state", 3);
  await assert.rejects(
    pager.pageIn(buf, [0, 1, 2]),
    (e: Error) => e instanceof OutOfBudgetError && /"big state"/.test(e.message) && /64.00 KiB/.test(e.message),
  );
  assert.throws(() => new Pager(gpu, { pageSize: 1000 }), /multiple of 256/);
  assert.throws(() => new Pager(gpu, { pageSize: PAGE, stagingSize: PAGE + 256 }), /multiple of the page size/);
  assert.throws(() => pager.release(buf, [0], false), /not pinned/);
  await assert.rejects(pager.pageIn(buf, [1, 1]), /lists a page twice/);
  pager.destroy();
  gpu.destroy();
});
