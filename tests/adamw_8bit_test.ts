import assert from "node:assert/strict";
import { requestGpu, Rng, Tensor } from "../mod.ts";
import { adamw8bit, adamw8bitCodes } from "../lib/kernels/mod.ts";
import { assertClose } from "./_assert.ts";
import { asStep, type Hyper, refStep } from "./_adamw_ref.ts";

Deno.test("adamw8bit: from zero states, the step is the f32 one; moments stored as codes and block absmax", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(6);
  const [n, cap] = [300, 512]; // two blocks of 256, the second partial
  const p0 = rng.normalArray(n);
  const g = rng.normalArray(n, 0, 0.5);
  const param = Tensor.fromArray(gpu, p0, [n]);
  const grad = Tensor.fromArray(gpu, g, [n]);
  // m codes [cap] u8, v codes [cap] u8, m absmax [cap/256] f32, v absmax [cap/256] f32.
  const state = Tensor.empty(gpu, [(2 * cap) / 4 + 2 * (cap / 256)]);
  const seg = {
    param: { buffer: param.buffer },
    grad: { buffer: grad.buffer },
    state: { buffer: state.buffer },
    n,
    cap,
    clip: { buffer: Tensor.fromArray(gpu, new Float32Array([1, 1]), [2]).buffer }, // finite norm, scale 1
  };
  const h: Hyper = { lr: 1e-2, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.1 };
  const codes = adamw8bitCodes(gpu);
  adamw8bit(gpu, seg, codes, asStep(h, 1));
  const [p, m, v] = [p0.slice(), new Float32Array(n), new Float32Array(n)];
  refStep(p, g, m, v, h, 1);
  // The parameter is updated with the f32 moments, before they are requantized.
  assertClose(await param.toFloat32(), p, { rtol: 1e-6, atol: 1e-7 }, "param");
  const words = await state.toFloat32();
  const absmax = words.subarray((2 * cap) / 4);
  const blockMax = (x: Float32Array, b: number) => Math.max(...x.subarray(b * 256, (b + 1) * 256).map(Math.abs));
  assertClose(absmax, [blockMax(m, 0), blockMax(m, 1), blockMax(v, 0), blockMax(v, 1)], { rtol: 1e-6 }, "absmax");
  const table = await gpu.readF32(codes);
  const bytes = new Uint8Array(words.buffer, 0, 2 * cap);
  for (let i = 0; i < n; i++) {
    const b = Math.floor(i / 256);
    // Each stored moment decodes to within 5% of its block's absmax.
    assert.ok(Math.abs(table[bytes[i]] * absmax[b] - m[i]) <= 0.05 * absmax[b], `m[${i}]`);
    assert.ok(Math.abs(table[256 + bytes[cap + i]] * absmax[2 + b] - v[i]) <= 0.05 * absmax[2 + b], `v[${i}]`);
  }
  gpu.destroy();
});
