import assert from "node:assert/strict";
import { type Gpu, type LoraAdapter, qlinearBackward, qlinearForward, requestGpu, Rng, Tensor } from "../mod.ts";
import { matmul, nf4Linear, nf4LinearGradInput } from "../lib/kernels/mod.ts";
import { splitRows } from "../lib/kernels/_kernel.ts";
import { assertClose } from "./_assert.ts";
import { maxAbs, randomQuantized } from "./_qlinear_ref.ts";

// Ragged shapes: M = 70 rows of K = 72 (288 B) and N = 40 (160 B) floats; a 5760-byte limit gives 16-row ranges
// with a 256-byte offset alignment (16 rows + 6). Row-local products are compared for exact equality: each output
// sums the same terms in the same order whatever rows are bound. Reductions over M are summed range by range in f32:
// a different order, so they get 1e-6 of the largest output plus 1e-5 relative.
const [M, N, K, R] = [70, 40, 72, 4];
const LIMIT = 5760;

function reductionClose(actual: Float32Array, want: Float32Array, label: string): void {
  assertClose(actual, want, { rtol: 1e-5, atol: 1e-6 * maxAbs(want) }, label);
}

Deno.test("rowRanges: ranges cover the rows, fit the limit, and start at aligned offsets", () => {
  for (
    const [rows, widths, max] of [[70, [288, 160], 5760], [1000, [12, 400, 4], 40_000], [5, [8], 1 << 20]] as const
  ) {
    const ranges = splitRows(rows, widths, max, 256, "test");
    assert.equal(ranges[0][0], 0);
    assert.equal(ranges.at(-1)![1], rows);
    for (const [i, [r0, r1]] of ranges.entries()) {
      if (i > 0) assert.equal(r0, ranges[i - 1][1]);
      assert.ok(r1 > r0);
      for (const w of widths) {
        assert.ok((r1 - r0) * w <= max, `range [${r0}, ${r1}) of ${w}-byte rows`);
        assert.equal((r0 * w) % 256, 0);
      }
    }
  }
  assert.deepEqual(splitRows(70, [288, 160], LIMIT, 256, "t").map((r: [number, number]) => r[1] - r[0]), [
    16,
    16,
    16,
    16,
    6,
  ]);
  assert.throws(() => splitRows(100, [260], 1000, 256, "matmul"), /matmul: rows of 260 bytes .* 64-row groups/);
});

/** A device with the test's small binding limit, and the default device, each given its own copy of the data. */
async function devices(limit = LIMIT): Promise<{ small: Gpu; whole: Gpu; [Symbol.dispose](): void }> {
  const [small, whole] = await Promise.all([requestGpu({ maxBindingBytes: limit }), requestGpu()]);
  return { small, whole, [Symbol.dispose]: () => [small, whole].forEach((g) => g.destroy()) };
}

Deno.test("matmul: rows of a and out, and reductions over the rows of aᵀ and b, split by a binding limit", async () => {
  using d = await devices();
  const rng = new Rng(11);
  assert.ok(d.whole.limits.minStorageBufferOffsetAlignment <= 256);
  // b and the reduction's out are bound whole: [16, 72] fits the limit.
  const n = 16;
  const host = { a: rng.normalArray(M * K), bt: rng.normalArray(n * K), dy: rng.normalArray(M * n) };
  const c0 = rng.normalArray(M * n);
  const on = (g: Gpu) => ({
    a: Tensor.fromArray(g, host.a, [M, K]),
    bt: Tensor.fromArray(g, host.bt, [n, K]),
    dy: Tensor.fromArray(g, host.dy, [M, n]),
  });
  const [s, w] = [on(d.small), on(d.whole)];
  // Rows of M: a·bᵀ, overwrite and accumulate.
  const whole = await matmul(w.a, w.bt, { transB: true, alpha: 0.5 }).toFloat32();
  assert.deepEqual(await matmul(s.a, s.bt, { transB: true, alpha: 0.5 }).toFloat32(), whole);
  const acc = (t: typeof s) => {
    const out = Tensor.fromArray(t.a.gpu, c0, [M, n]);
    return matmul(t.a, t.bt, { transB: true, accumulate: true, out }).toFloat32();
  };
  assert.deepEqual(await acc(s), await acc(w));
  // Rows of K (M here): dyᵀ·a [n, K], overwrite and accumulate (the first range honours the caller's flag).
  const red = await matmul(w.dy, w.a, { transA: true }).toFloat32();
  reductionClose(await matmul(s.dy, s.a, { transA: true }).toFloat32(), red, "dyᵀ·a");
  const start = rng.normalArray(n * K);
  const twice = Tensor.fromArray(d.small, start, [n, K]);
  matmul(s.dy, s.a, { transA: true, accumulate: true, out: twice });
  reductionClose(await twice.toFloat32(), red.map((v, i) => v + start[i]), "dyᵀ·a accumulated");
  // Dropout over several ranges keys its mask by the index in the whole tensor: the same elements are dropped.
  for (const on of ["a", "b", "out"] as const) {
    const dropout = { p: 0.3, seed: 5, on };
    const ab = (t: typeof s) => matmul(t.a, t.bt, { transB: true, dropout }).toFloat32();
    assert.deepEqual(await ab(s), await ab(w), `rows of M, dropout on ${on}`);
    const ta = (t: typeof s) => matmul(t.dy, t.a, { transA: true, dropout }).toFloat32();
    reductionClose(await ta(s), await ta(w), `rows of K, dropout on ${on}`);
  }
  // Not splittable: clear errors.
  const wide = Tensor.fromArray(d.small, rng.normalArray(N * M), [N, M]);
  assert.throws(() => matmul(s.a, wide, { transA: true, transB: true }), /aᵀ·bᵀ is not split/);
  using t = await devices(2048);
  const a2 = Tensor.fromArray(t.small, host.a, [M, K]);
  assert.throws(
    () => matmul(a2, Tensor.fromArray(t.small, host.bt, [n, K]), { transB: true }),
    /matmul \(rows of a and out are split\): b takes 4608 bytes/,
  );
});

Deno.test("nf4Linear and nf4LinearGradInput: row ranges equal the whole product (gemm and gemv paths)", async () => {
  using d = await devices();
  const rng = new Rng(12);
  const { w: ws } = randomQuantized(d.small, new Rng(12), N, K, { blocksize: 64, doubleQuant: true });
  const { w: ww } = randomQuantized(d.whole, rng, N, K, { blocksize: 64, doubleQuant: true });
  const host = { x: rng.normalArray(M * K), bias: rng.normalArray(N), dy: rng.normalArray(M * N) };
  const on = (g: Gpu) => ({
    x: Tensor.fromArray(g, host.x, [M, K]),
    bias: Tensor.fromArray(g, host.bias, [N]),
    dy: Tensor.fromArray(g, host.dy, [M, N]),
  });
  const [s, w] = [on(d.small), on(d.whole)];
  const whole = await nf4Linear(w.x, ww, { bias: w.bias }).toFloat32();
  assert.deepEqual(await nf4Linear(s.x, ws, { bias: s.bias }).toFloat32(), whole);
  assert.deepEqual(await nf4LinearGradInput(s.dy, ws).toFloat32(), await nf4LinearGradInput(w.dy, ww).toFloat32());
  // GEMV: 13 rows in ranges of 8 (a 256-byte alignment with 288-byte rows needs multiples of 8 rows).
  const x13 = rng.normalArray(13 * K);
  using g8 = await devices(8 * K * 4);
  const { w: w8 } = randomQuantized(g8.small, new Rng(12), N, K, { blocksize: 64, doubleQuant: true });
  assert.deepEqual(
    await nf4Linear(Tensor.fromArray(g8.small, x13, [13, K]), w8, { path: "gemv" }).toFloat32(),
    await nf4Linear(Tensor.fromArray(d.whole, x13, [13, K]), ww, { path: "gemv" }).toFloat32(),
  );
  using g1 = await devices(1024);
  const { w: w1 } = randomQuantized(g1.small, new Rng(12), N, K, { blocksize: 64, doubleQuant: true });
  const x1 = Tensor.fromArray(g1.small, host.x, [M, K]);
  assert.throws(() => nf4Linear(x1, w1), /weight "w" \[40,72\] is bound whole.*packed weight/);
  if (d.whole.features.shaderF16) {
    assert.deepEqual(
      await nf4Linear(s.x, ws, { precision: "f16" }).toFloat32(),
      await nf4Linear(w.x, ww, { precision: "f16" }).toFloat32(),
    );
  }
});

Deno.test("qlinearForward/qlinearBackward: split rows equal the whole layer, with and without dropout; dA, dB to f32 reordering", async () => {
  using d = await devices();
  const rng = new Rng(13);
  const { w: ws } = randomQuantized(d.small, new Rng(13), N, K, { blocksize: 64, doubleQuant: false });
  const { w: ww } = randomQuantized(d.whole, rng, N, K, { blocksize: 64, doubleQuant: false });
  const host = { a: rng.normalArray(R * K), b: rng.normalArray(N * R), x: rng.normalArray(M * K) };
  const hdy = rng.normalArray(M * N);
  const run = async (g: Gpu, dropout = 0) => {
    const w = g === d.small ? ws : ww;
    const lora: LoraAdapter = {
      a: Tensor.fromArray(g, host.a, [R, K]),
      b: Tensor.fromArray(g, host.b, [N, R]),
      scale: 0.75,
    };
    const x = Tensor.fromArray(g, host.x, [M, K]);
    const dy = Tensor.fromArray(g, hdy, [M, N]);
    const { y, xa } = qlinearForward(x, w, { ...lora, dropout }, { seed: 3 });
    const grads = qlinearBackward(dy, x, xa, w, { ...lora, dropout }, { seed: 3 });
    return {
      y: await y.toFloat32(),
      xa: await xa.toFloat32(),
      dx: await grads.dx!.toFloat32(),
      dA: await grads.dA.toFloat32(),
      dB: await grads.dB.toFloat32(),
    };
  };
  const whole = await run(d.whole);
  const split = await run(d.small);
  assert.deepEqual(split.y, whole.y);
  assert.deepEqual(split.xa, whole.xa);
  assert.deepEqual(split.dx, whole.dx);
  reductionClose(split.dA, whole.dA, "dA");
  reductionClose(split.dB, whole.dB, "dB");
  // With dropout: the mask is keyed by the index in the whole X, so split rows drop the same elements.
  const wholeDrop = await run(d.whole, 0.1);
  const splitDrop = await run(d.small, 0.1);
  assert.notDeepEqual(wholeDrop.y, whole.y);
  assert.deepEqual(splitDrop.y, wholeDrop.y);
  assert.deepEqual(splitDrop.xa, wholeDrop.xa);
  assert.deepEqual(splitDrop.dx, wholeDrop.dx);
  reductionClose(splitDrop.dA, wholeDrop.dA, "dA with dropout");
  reductionClose(splitDrop.dB, wholeDrop.dB, "dB with dropout");
});
