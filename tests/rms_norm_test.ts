import { throws } from "node:assert/strict";
import { type Gpu, requestGpu, Rng, Tensor } from "../mod.ts";
import { rmsNormBackward, rmsNormForward } from "../lib/kernels/mod.ts";
import { assertClose, finiteDifference } from "./_assert.ts";
import { dotWith, rmsNormBackwardRef, rmsNormRef } from "./_ops_ref.ts";

Deno.test("rmsNorm: forward and backward match the float64 reference (ragged widths)", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(1);
  for (const [rows, cols] of [[1, 5], [7, 1000], [3, 4096], [300, 33]]) {
    const xs = rng.normalArray(rows * cols, 0.3, 2),
      ws = rng.normalArray(cols, 1, 0.2),
      dys = rng.normalArray(rows * cols);
    const x = Tensor.fromArray(gpu, xs, [rows, cols]);
    const w = Tensor.fromArray(gpu, ws, [cols]);
    const dy = Tensor.fromArray(gpu, dys, [rows, cols]);
    const { y, rstd } = rmsNormForward(gpu, x, w, 1e-5);
    const dx = rmsNormBackward(gpu, dy, x, w, rstd);
    // f32 sums of up to 4096 squares: relative error a few 1e-7 per element.
    assertClose(await y.toFloat32(), rmsNormRef(xs, ws, cols, 1e-5), { rtol: 1e-5, atol: 1e-5 }, `y ${rows}x${cols}`);
    assertClose(await dx.toFloat32(), rmsNormBackwardRef(dys, xs, ws, cols, 1e-5), { rtol: 1e-4, atol: 1e-5 }, "dx");
  }
  gpu.destroy();
});

Deno.test("rmsNorm: backward matches finite differences of the reference", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(2);
  const rows = 3, cols = 6, eps = 1e-2;
  const xs = rng.normalArray(rows * cols), ws = rng.normalArray(cols, 1, 0.3), dys = rng.normalArray(rows * cols);
  const x = Tensor.fromArray(gpu, xs, [rows, cols]);
  const w = Tensor.fromArray(gpu, ws, [cols]);
  const { rstd } = rmsNormForward(gpu, x, w, eps);
  const dx = rmsNormBackward(gpu, Tensor.fromArray(gpu, dys, [rows, cols]), x, w, rstd);
  const fd = finiteDifference((v) => dotWith(rmsNormRef(v, ws, cols, eps), dys), Float64Array.from(xs), 1e-5);
  assertClose(await dx.toFloat32(), fd, { rtol: 1e-4, atol: 1e-5 }, "dx vs finite differences");
  gpu.destroy();
});

Deno.test("rmsNorm: backward adds into a residual gradient in the same pass (whole and in row ranges)", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(4);
  // 300 rows of 33 floats: under a 16896-byte limit the rows go in ranges of 128, 128 and 44 (see below).
  const rows = 300, cols = 33, eps = 1e-5;
  const small = await requestGpu({ maxBindingBytes: 16_896 });
  const [xs, ws, dys, rs] = [
    rng.normalArray(rows * cols),
    rng.normalArray(cols, 1, 0.2),
    rng.normalArray(rows * cols),
    rng.normalArray(rows * cols),
  ];
  const want = rmsNormBackwardRef(dys, xs, ws, cols, eps).map((v, i) => v + rs[i]);
  for (const g of [gpu, small]) {
    const x = Tensor.fromArray(g, xs, [rows, cols]);
    const w = Tensor.fromArray(g, ws, [cols]);
    const dy = Tensor.fromArray(g, dys, [rows, cols]);
    const { rstd } = rmsNormForward(g, x, w, eps);
    const plain = await rmsNormBackward(g, dy, x, w, rstd).toFloat32();
    const res = Tensor.fromArray(g, rs, [rows, cols], { label: "residual" });
    const got = await rmsNormBackward(g, dy, x, w, rstd, res, { accumulate: true }).toFloat32();
    // The same norm gradient, then one f32 addition: the bits of the separate add.
    assertClose(got, plain.map((v, i) => v + rs[i]), { atol: 0 }, "accumulate = backward + residual");
    assertClose(got, want, { rtol: 1e-4, atol: 1e-5 }, "accumulate vs the reference");
    throws(() => rmsNormBackward(g, dy, x, w, rstd, undefined, { accumulate: true }), /accumulate needs a dx/);
  }
  small.destroy();
  gpu.destroy();
});

Deno.test("rmsNorm: wrong weight size and aliasing are clear errors", async () => {
  const gpu = await requestGpu();
  const x = Tensor.empty(gpu, [2, 4], { label: "h" });
  throws(() => rmsNormForward(gpu, x, Tensor.empty(gpu, [3], { label: "w" }), 1e-5), /RMSNorm input "h".*3 columns/);
  throws(() => rmsNormForward(gpu, x, Tensor.empty(gpu, [4]), 1e-5, { y: x }), /shares a buffer/);
  gpu.destroy();
});

Deno.test("rmsNorm: row ranges under a small binding limit equal the whole dispatch", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(3);
  // 300 rows of 33 floats (132 bytes): 64-row granularity for the 256-byte offset alignment; a 16896-byte limit
  // gives ranges of 128, 128 and 44 rows. Each row is normalized alone: results equal bit for bit.
  const rows = 300, cols = 33, limit = 16_896;
  const small = await requestGpu({ maxBindingBytes: limit });
  const [hx, hw, hdy] = [rng.normalArray(rows * cols), rng.normalArray(cols, 1, 0.2), rng.normalArray(rows * cols)];
  const on = (g: Gpu) => ({
    x: Tensor.fromArray(g, hx, [rows, cols]),
    w: Tensor.fromArray(g, hw, [cols]),
    dy: Tensor.fromArray(g, hdy, [rows, cols]),
  });
  const [a, b] = [on(gpu), on(small)];
  const whole = rmsNormForward(gpu, a.x, a.w, 1e-5);
  const split = rmsNormForward(small, b.x, b.w, 1e-5);
  assertClose(await split.y.toFloat32(), await whole.y.toFloat32(), { atol: 0 }, "y");
  assertClose(await split.rstd.toFloat32(), await whole.rstd.toFloat32(), { atol: 0 }, "rstd");
  const dx = rmsNormBackward(small, b.dy, b.x, b.w, split.rstd);
  const dxWhole = rmsNormBackward(gpu, a.dy, a.x, a.w, whole.rstd);
  assertClose(await dx.toFloat32(), await dxWhole.toFloat32(), { atol: 0 }, "dx");
  small.destroy();
  const tiny = await requestGpu({ maxBindingBytes: 1000 });
  const t = on(tiny);
  throws(() => rmsNormForward(tiny, t.x, t.w, 1e-5), /rmsNormForward: rows of 132 bytes/);
  tiny.destroy();
  gpu.destroy();
});
