import assert from "node:assert/strict";
import { requestGpu, Rng, Tensor } from "../mod.ts";
import { embeddingForward } from "../lib/kernels/mod.ts";

Deno.test("embedding: gathers rows for host and tensor ids", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(6);
  const vocab = 37, cols = 24, n = 50;
  const tab = rng.normalArray(vocab * cols);
  const table = Tensor.fromArray(gpu, tab, [vocab, cols], { class: "weights" });
  const ids = Uint32Array.from({ length: n }, () => rng.int(vocab));
  ids[0] = vocab - 1;
  const want = new Float32Array(n * cols);
  ids.forEach((id, t) => want.set(tab.subarray(id * cols, (id + 1) * cols), t * cols));
  assert.deepEqual(await embeddingForward(gpu, table, ids).toFloat32(), want);
  const onGpu = Tensor.fromArray(gpu, Int32Array.from(ids), [n]);
  assert.deepEqual(await embeddingForward(gpu, table, onGpu).toFloat32(), want);
  gpu.destroy();
});

Deno.test("embedding: a table larger than one binding is read in ranges", async () => {
  // Pretend the binding limit is 4 KiB so that a 40-row table of 64 floats needs 3 ranges.
  const gpu = await requestGpu({ maxBindingBytes: 4096 });
  const vocab = 40, cols = 64;
  const tab = Float32Array.from({ length: vocab * cols }, (_, i) => i);
  const table = Tensor.fromArray(gpu, tab, [vocab, cols]);
  const ids = new Int32Array([0, 15, 16, 39, 31, 32]);
  const out = await embeddingForward(gpu, table, ids, Tensor.empty(gpu, [6, cols])).toFloat32();
  ids.forEach((id, t) => assert.equal(out[t * cols + 5], id * cols + 5, `row ${t}`));
  assert.throws(() => embeddingForward(gpu, table, new Int32Array([1, -1])), /token id -1 at position 1/);
  gpu.destroy();
});

Deno.test("embedding: a table held as row chunks (past one buffer) gathers as the whole table", async () => {
  // 4 KiB bindings: the middle chunk is also read in ranges.
  const gpu = await requestGpu({ maxBindingBytes: 4096 });
  const cols = 64;
  const tab = Float32Array.from({ length: 40 * cols }, (_, i) => i);
  const whole = Tensor.fromArray(gpu, tab, [40, cols]);
  const chunks = [[0, 7], [7, 35], [35, 40]].map(([a, b]) =>
    Tensor.fromArray(gpu, tab.subarray(a * cols, b * cols), [b - a, cols], { label: `rows ${a}:${b}` })
  );
  const ids = new Int32Array([0, 6, 7, 34, 35, 39, 20]);
  assert.deepEqual(
    await embeddingForward(gpu, chunks, ids).toFloat32(),
    await embeddingForward(gpu, whole, ids).toFloat32(),
  );
  assert.throws(() => embeddingForward(gpu, chunks, new Int32Array([40])), /token id 40 at position 0/);
  gpu.destroy();
});
