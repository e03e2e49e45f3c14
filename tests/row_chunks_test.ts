import assert from "node:assert/strict";
import {
  type LoraAdapter,
  matmul,
  nf4Linear,
  nf4LinearGradInput,
  qlinearBackward,
  qlinearForward,
  requestGpu,
  Rng,
  Tensor,
} from "../mod.ts";
import { rowRanges } from "../lib/kernels/_row_chunks.ts";
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
    const ranges = rowRanges(rows, widths, max, 256, "test");
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
  assert.deepEqual(rowRanges(70, [288, 160], LIMIT, 256, "t").map((r) => r[1] - r[0]), [16, 16, 16, 16, 6]);
  assert.throws(() => rowRanges(100, [260], 1000, 256, "matmul"), /matmul: rows of 260 bytes .* 64-row groups/);
});

Deno.test("matmul: rows of a and out, and reductions over the rows of aᵀ and b, split by a binding limit", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(11);
  assert.ok(gpu.limits.minStorageBufferOffsetAlignment <= 256);
  // b and the reduction's out are bound whole: [16, 72] fits the limit.
  const n = 16;
  const a = Tensor.fromArray(gpu, rng.normalArray(M * K), [M, K]);
  const bt = Tensor.fromArray(gpu, rng.normalArray(n * K), [n, K]);
  const dy = Tensor.fromArray(gpu, rng.normalArray(M * n), [M, n]);
  const c0 = Tensor.fromArray(gpu, rng.normalArray(M * n), [M, n]);
  const maxBindingBytes = LIMIT;
  // Rows of M: a·bᵀ, overwrite and accumulate.
  const whole = await matmul(a, bt, { transB: true, alpha: 0.5 }).toFloat32();
  assert.deepEqual(await matmul(a, bt, { transB: true, alpha: 0.5, maxBindingBytes }).toFloat32(), whole);
  const acc = (limit?: number) => {
    const out = Tensor.fromArray(gpu, new Float32Array(M * n), [M, n]);
    gpu.copy(c0.buffer, 0, out.buffer, 0, c0.byteLength);
    return matmul(a, bt, { transB: true, accumulate: true, out, maxBindingBytes: limit }).toFloat32();
  };
  assert.deepEqual(await acc(maxBindingBytes), await acc());
  // Rows of K (M here): dyᵀ·a [n, K], overwrite and accumulate (the first range honours the caller's flag).
  const red = await matmul(dy, a, { transA: true }).toFloat32();
  reductionClose(await matmul(dy, a, { transA: true, maxBindingBytes }).toFloat32(), red, "dyᵀ·a");
  const start = rng.normalArray(n * K);
  const twice = Tensor.fromArray(gpu, start, [n, K]);
  matmul(dy, a, { transA: true, accumulate: true, out: twice, maxBindingBytes });
  reductionClose(await twice.toFloat32(), red.map((v, i) => v + start[i]), "dyᵀ·a accumulated");
  // Dropout over several ranges keys its mask by the index in the whole tensor: the same elements are dropped.
  for (const on of ["a", "b", "out"] as const) {
    const dropout = { p: 0.3, seed: 5, on };
    const ab = (limit?: number) => matmul(a, bt, { transB: true, dropout, maxBindingBytes: limit }).toFloat32();
    assert.deepEqual(await ab(maxBindingBytes), await ab(), `rows of M, dropout on ${on}`);
    const ta = (limit?: number) => matmul(dy, a, { transA: true, dropout, maxBindingBytes: limit }).toFloat32();
    reductionClose(await ta(maxBindingBytes), await ta(), `rows of K, dropout on ${on}`);
  }
  // Not splittable: clear errors.
  const wide = Tensor.fromArray(gpu, rng.normalArray(N * M), [N, M]);
  assert.throws(() => matmul(a, wide, { transA: true, transB: true, maxBindingBytes }), /aᵀ·bᵀ is not split/);
  assert.throws(
    () => matmul(a, bt, { transB: true, maxBindingBytes: 2048 }),
    /matmul \(rows of a and out are split\): b takes 4608 bytes/,
  );
});

Deno.test("nf4Linear and nf4LinearGradInput: row ranges equal the whole product (gemm and gemv paths)", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(12);
  const { w } = randomQuantized(gpu, rng, N, K, { blocksize: 64, doubleQuant: true });
  const x = Tensor.fromArray(gpu, rng.normalArray(M * K), [M, K]);
  const bias = Tensor.fromArray(gpu, rng.normalArray(N), [N]);
  const dy = Tensor.fromArray(gpu, rng.normalArray(M * N), [M, N]);
  const whole = await nf4Linear(x, w, { bias }).toFloat32();
  assert.deepEqual(await nf4Linear(x, w, { bias, maxBindingBytes: LIMIT }).toFloat32(), whole);
  assert.deepEqual(
    await nf4LinearGradInput(dy, w, { maxBindingBytes: LIMIT }).toFloat32(),
    await nf4LinearGradInput(dy, w).toFloat32(),
  );
  // GEMV: 13 rows in ranges of 8 (a 256-byte alignment with 288-byte rows needs multiples of 8 rows).
  const x13 = Tensor.fromArray(gpu, rng.normalArray(13 * K), [13, K]);
  assert.deepEqual(
    await nf4Linear(x13, w, { path: "gemv", maxBindingBytes: 8 * K * 4 }).toFloat32(),
    await nf4Linear(x13, w, { path: "gemv" }).toFloat32(),
  );
  assert.throws(() => nf4Linear(x, w, { maxBindingBytes: 1024 }), /weight "w" \[40,72\] is bound whole.*packed weight/);
  if (gpu.features.shaderF16) {
    assert.deepEqual(
      await nf4Linear(x, w, { precision: "f16", maxBindingBytes: LIMIT }).toFloat32(),
      await nf4Linear(x, w, { precision: "f16" }).toFloat32(),
    );
  }
});

Deno.test("qlinearForward/qlinearBackward: split rows equal the whole layer, with and without dropout; dA, dB to f32 reordering", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(13);
  const { w } = randomQuantized(gpu, rng, N, K, { blocksize: 64, doubleQuant: false });
  const lora: LoraAdapter = {
    a: Tensor.fromArray(gpu, rng.normalArray(R * K), [R, K]),
    b: Tensor.fromArray(gpu, rng.normalArray(N * R), [N, R]),
    scale: 0.75,
  };
  const x = Tensor.fromArray(gpu, rng.normalArray(M * K), [M, K]);
  const dy = Tensor.fromArray(gpu, rng.normalArray(M * N), [M, N]);
  const run = async (maxBindingBytes?: number, dropout = 0) => {
    const { y, xa } = qlinearForward(x, w, { ...lora, dropout }, { seed: 3, maxBindingBytes });
    const g = qlinearBackward(dy, x, xa, w, { ...lora, dropout }, { seed: 3, maxBindingBytes });
    return {
      y: await y.toFloat32(),
      xa: await xa.toFloat32(),
      dx: await g.dx!.toFloat32(),
      dA: await g.dA.toFloat32(),
      dB: await g.dB.toFloat32(),
    };
  };
  const whole = await run();
  const split = await run(LIMIT);
  assert.deepEqual(split.y, whole.y);
  assert.deepEqual(split.xa, whole.xa);
  assert.deepEqual(split.dx, whole.dx);
  reductionClose(split.dA, whole.dA, "dA");
  reductionClose(split.dB, whole.dB, "dB");
  // With dropout: the mask is keyed by the index in the whole X, so split rows drop the same elements.
  const wholeDrop = await run(undefined, 0.1);
  const splitDrop = await run(LIMIT, 0.1);
  assert.notDeepEqual(wholeDrop.y, whole.y);
  assert.deepEqual(splitDrop.y, wholeDrop.y);
  assert.deepEqual(splitDrop.xa, wholeDrop.xa);
  assert.deepEqual(splitDrop.dx, wholeDrop.dx);
  reductionClose(splitDrop.dA, wholeDrop.dA, "dA with dropout");
  reductionClose(splitDrop.dB, wholeDrop.dB, "dB with dropout");
});
