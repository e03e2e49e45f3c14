import assert from "node:assert/strict";
import { type Gpu, requestGpu, Rng, Tensor } from "../mod.ts";
import { bf16ToF32, f32ToBf16 } from "../lib/dtype.ts";
import { embeddingForward, matmul, rmsNormBackward, rmsNormForward } from "../lib/kernels/mod.ts";

// Frozen weights held as the checkpoint stores them (bf16, f16) give bit-identical results to the same values in f32.

/** `n` random values exactly representable in bf16 and in f16 (8 significant bits, small exponents). */
function _values(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return bf16ToF32(f32ToBf16(Float32Array.from({ length: n }, () => Math.round(rng.normal() * 64) / 64)));
}

/** The f32 weight and its bf16 and f16 copies. */
function _held(gpu: Gpu, v: Float32Array, shape: number[]): Tensor[] {
  return [
    Tensor.fromArray(gpu, v, shape, { label: "f32" }),
    Tensor.fromArray(gpu, f32ToBf16(v), shape, { dtype: "bf16", label: "bf16" }),
    Tensor.fromArray(gpu, Float16Array.from(v), shape, { dtype: "f16", label: "f16" }),
  ];
}

async function _same(results: Tensor[]): Promise<void> {
  const got: Float32Array[] = [];
  for (const t of results) got.push(await t.toFloat32()); // one read at a time
  const [ref, ...rest] = got;
  for (const [i, r] of rest.entries()) assert.deepEqual(r, ref, ["bf16", "f16"][i]);
}

Deno.test("stored float: embedding gather of a bf16/f16 table equals the f32 table's, in ranges too", async () => {
  // 4 KiB bindings: the 40 × 64 table is read in ranges (f32: 3, 16-bit: 2).
  const gpu = await requestGpu({ maxBindingBytes: 4096 });
  const ids = new Int32Array([0, 15, 16, 39, 31, 32, 8]);
  await _same(_held(gpu, _values(40 * 64, 1), [40, 64]).map((t) => embeddingForward(gpu, t, ids)));
  const odd = Tensor.empty(gpu, [3, 3], { dtype: "bf16", label: "odd" });
  assert.throws(() => embeddingForward(gpu, odd, ids), /table "odd" is \[3,3\] bf16, expected f32, or bf16\/f16/);
  gpu.destroy();
});

Deno.test("stored float: lm_head products with a bf16/f16 weight equal the f32 weight's", async () => {
  const gpu = await requestGpu();
  const x = Tensor.fromArray(gpu, _values(5 * 24, 2), [5, 24]);
  const held = _held(gpu, _values(37 * 24, 3), [37, 24]);
  await _same(held.map((w) => matmul(x, w, { transB: true })));
  const dLogits = Tensor.fromArray(gpu, _values(5 * 37, 4), [5, 37]);
  await _same(held.map((w) => matmul(dLogits, w)));
  gpu.destroy();
});

Deno.test("stored float: RMSNorm with a bf16/f16 weight equals the f32 weight's, forward and backward", async () => {
  const gpu = await requestGpu();
  const x = Tensor.fromArray(gpu, _values(6 * 70, 5), [6, 70]);
  const dy = Tensor.fromArray(gpu, _values(6 * 70, 6), [6, 70]);
  const held = _held(gpu, _values(70, 7), [70]);
  const fwd = held.map((w) => rmsNormForward(gpu, x, w, 1e-5));
  await _same(fwd.map((f) => f.y));
  await _same(held.map((w, i) => rmsNormBackward(gpu, dy, x, w, fwd[i].rstd)));
  gpu.destroy();
});
