import assert from "node:assert/strict";
import { requestGpu, Rng, Tensor } from "../mod.ts";
import { crossEntropy, readCrossEntropy } from "../lib/kernels/mod.ts";
import { assertClose, finiteDifference } from "./_assert.ts";
import { crossEntropyRef } from "./_ops_ref.ts";

function labelsFor(rng: Rng, rows: number, vocab: number): Int32Array {
  return Int32Array.from({ length: rows }, () => rng.uniform() < 0.3 ? -100 : rng.int(vocab));
}

Deno.test("crossEntropy: loss and gradient match the float64 reference (ragged V, ignored labels)", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(7);
  for (const [rows, vocab] of [[1, 3], [9, 1000], [4, 32003]]) {
    const x = rng.normalArray(rows * vocab, 0, 3);
    const labels = labelsFor(rng, rows, vocab);
    labels[0] = vocab - 1;
    const ref = crossEntropyRef(x, labels, vocab);
    const logits = Tensor.fromArray(gpu, x, [rows, vocab]);
    const { stats, dLogits } = crossEntropy(gpu, logits, Tensor.fromArray(gpu, labels, [rows]));
    assert.equal(dLogits, logits, "in place by default");
    const got = await readCrossEntropy(stats);
    assert.equal(got.count, ref.count);
    // f32 logsumexp over up to 32k entries: ~1e-6 relative.
    assertClose([got.loss, got.sum], [ref.mean, ref.sum], { rtol: 1e-5, atol: 1e-5 }, `loss ${rows}x${vocab}`);
    assertClose(await dLogits.toFloat32(), ref.dLogits, { rtol: 1e-4, atol: 1e-7 }, `dLogits ${rows}x${vocab}`);
  }
  gpu.destroy();
});

Deno.test("crossEntropy: gradient matches finite differences; gradScale and a separate dLogits", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(8);
  const rows = 3, vocab = 5;
  const x = rng.normalArray(rows * vocab);
  const labels = new Int32Array([4, -100, 0]);
  const logits = Tensor.fromArray(gpu, x, [rows, vocab]);
  const { dLogits } = crossEntropy(gpu, logits, Tensor.fromArray(gpu, labels, [rows]), {
    dLogits: Tensor.empty(gpu, [rows, vocab]),
    gradScale: 0.25, // e.g. 1 / tokens of two micro-batches of 2
  });
  const fd = finiteDifference((v) => crossEntropyRef(v, labels, vocab).sum * 0.25, Float64Array.from(x));
  assertClose(await dLogits.toFloat32(), fd, { rtol: 1e-4, atol: 1e-6 }, "dLogits vs finite differences");
  assert.deepEqual(await logits.toFloat32(), x, "logits untouched");
  gpu.destroy();
});

Deno.test("crossEntropy: NaN/Inf logits and bad labels are reported; no labels gives loss 0", async () => {
  const gpu = await requestGpu();
  const x = new Float32Array(4 * 3);
  x[2 * 3 + 1] = Infinity;
  x[3 * 3] = NaN;
  const run = (l: number[]) =>
    readCrossEntropy(
      crossEntropy(gpu, Tensor.fromArray(gpu, x, [4, 3]), Tensor.fromArray(gpu, new Int32Array(l), [4])).stats,
    );
  await assert.rejects(run([0, 0, 0, 0]), /2 rows of logits hold NaN\/Inf \(first: row 2\)/);
  x.fill(0);
  await assert.rejects(
    run([0, 3, -100, -5]),
    /2 rows with a label outside \[0, vocab\) other than -100 \(first: row 1\)/,
  );
  const none = await run([-100, -100, -100, -100]);
  assert.deepEqual(none, { loss: 0, sum: 0, count: 0 });
  gpu.destroy();
});

Deno.test("crossEntropy: logits larger than one binding are processed in row ranges", async () => {
  const small = await requestGpu({ maxBindingBytes: 2048 }); // 64-float rows: 8 rows per range
  const rng = new Rng(9);
  const rows = 21, vocab = 64;
  const x = rng.normalArray(rows * vocab);
  const labels = labelsFor(rng, rows, vocab);
  const ref = crossEntropyRef(x, labels, vocab);
  const { stats, dLogits } = crossEntropy(
    small,
    Tensor.fromArray(small, x, [rows, vocab]),
    Tensor.fromArray(small, labels, [rows]),
  );
  const got = await readCrossEntropy(stats);
  assertClose([got.loss], [ref.mean], { rtol: 1e-5 }, "loss");
  assertClose(await dLogits.toFloat32(), ref.dLogits, { rtol: 1e-4, atol: 1e-7 }, "dLogits");
  small.destroy();
});
