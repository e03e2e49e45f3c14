import assert from "node:assert/strict";
import { requestGpu, Rng, Tensor } from "../mod.ts";
import { adamwF32 } from "../lib/kernels/mod.ts";
import { asStep, type Hyper, refStep } from "./_adamw_ref.ts";
import { assertClose } from "./_assert.ts";

Deno.test("adamwF32: two steps on a segment inside larger buffers match the reference; the rest is untouched", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(5);
  // Elements [64, 364) of a 500-element parameter; its state at byte 1024 of a page, room for 320 elements.
  const [start, n, cap, stateAt] = [64, 300, 320, 1024];
  const p0 = rng.normalArray(500);
  const param = Tensor.fromArray(gpu, p0, [500]);
  const grad = Tensor.empty(gpu, [500]);
  const page = Tensor.empty(gpu, [stateAt / 4 + 2 * cap + 16]);
  const seg = {
    param: { buffer: param.buffer, offset: start * 4, size: n * 4 },
    grad: { buffer: grad.buffer, offset: start * 4, size: n * 4 },
    state: { buffer: page.buffer, offset: stateAt, size: 2 * cap * 4 },
    n,
    cap,
    clip: { buffer: Tensor.fromArray(gpu, new Float32Array([1, 1]), [2]).buffer }, // finite norm, scale 1
  };
  const p = p0.slice(start, start + n);
  const [m, v] = [new Float32Array(n), new Float32Array(n)];
  const h: Hyper = { lr: 1e-2, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.1 };
  for (const t of [1, 2]) {
    const g = rng.normalArray(500, 0, 0.5);
    grad.write(g);
    adamwF32(gpu, seg, asStep(h, t));
    refStep(p, g.subarray(start, start + n), m, v, h, t);
  }
  const out = await param.toFloat32();
  assertClose(out.subarray(start, start + n), p, { rtol: 1e-6, atol: 1e-7 }, "param");
  assert.deepEqual([...out.subarray(0, start), ...out.subarray(start + n)], [
    ...p0.subarray(0, start),
    ...p0.subarray(start + n),
  ]);
  const state = await page.toFloat32();
  assertClose(state.subarray(stateAt / 4, stateAt / 4 + n), m, { rtol: 1e-6, atol: 1e-9 }, "m");
  assertClose(state.subarray(stateAt / 4 + cap, stateAt / 4 + cap + n), v, { rtol: 1e-6, atol: 1e-12 }, "v");
  assert.ok(state.subarray(0, stateAt / 4).every((x) => x === 0), "before the state");
  gpu.destroy();
});
