import assert from "node:assert/strict";
import { dequantizeNF4, quantizeNF4, requestGpu, Rng, Tensor } from "../mod.ts";
import { GEMV_MAX_ROWS, matmul, nf4Linear, nf4LinearGradInput } from "../lib/kernels/mod.ts";
import { assertClose, relError } from "./_assert.ts";
import { close, maxAbs, randomQuantized, refMatmul } from "./_qlinear_ref.ts";

/** Whether this adapter has shader-f16 (tests of the f16 products are ignored without it). */
const HAS_F16 = await (async () => {
  const gpu = await requestGpu();
  const has = gpu.features.shaderF16;
  gpu.destroy();
  return has;
})();

Deno.test("nf4Linear: gemv and gemm paths and dY·deq(W) against float64 dequantize-then-multiply", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(7);
  // [M, N, K, blocksize, doubleQuant]: ragged M/N/K, K not a multiple of the blocksize, K % 8 != 0 (unaligned
  // groups), odd N·K (a row starting mid-byte), blocks straddling rows, more than 256 blocks (two absmax2 groups).
  const cases: [number, number, number, number, boolean][] = [
    [1, 37, 200, 64, true],
    [5, 70, 136, 128, true],
    [16, 33, 61, 64, true],
    [3, 9, 100, 64, false],
    [33, 65, 200, 64, true],
    [70, 130, 72, 256, false],
    [17, 300, 130, 64, true],
  ];
  for (const [M, N, K, blocksize, doubleQuant] of cases) {
    const { w, deq } = randomQuantized(gpu, rng, N, K, { blocksize, doubleQuant });
    const x = rng.normalArray(M * K);
    const bias = rng.normalArray(N);
    const tx = Tensor.fromArray(gpu, x, [M, K]);
    const tb = Tensor.fromArray(gpu, bias, [N]);
    const label = `[${M},${N},${K}] bs=${blocksize} dq=${doubleQuant}`;
    const want = refMatmul(x, deq, M, N, K, { transB: true });
    const withBias = want.map((v, i) => v + bias[i % N]);
    const gemm = nf4Linear(tx, w, { path: "gemm", bias: tb });
    close(await gemm.toFloat32(), withBias, `gemm ${label}`);
    if (M <= GEMV_MAX_ROWS) {
      const gemv = nf4Linear(tx, w, { path: "gemv" });
      close(await gemv.toFloat32(), want, `gemv ${label}`);
      const gemvBias = nf4Linear(tx, w, { bias: tb });
      // Both paths sum in f32 in different orders: equal to f32 rounding.
      assertClose(
        await gemvBias.toFloat32(),
        await gemm.toFloat32(),
        { atol: 2e-5 * maxAbs(want) },
        `gemv==gemm ${label}`,
      );
    }
    const dy = rng.normalArray(M * N);
    const dx = nf4LinearGradInput(Tensor.fromArray(gpu, dy, [M, N]), w);
    close(await dx.toFloat32(), refMatmul(dy, deq, M, K, N, {}), `dx ${label}`);
  }
  gpu.destroy();
});

Deno.test("nf4Linear: weights from the GPU quantizer (nf4, fp4; block 64, 128) match dequantizeNF4 + matmul", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(9);
  for (const [quantType, blocksize, M] of [["nf4", 64, 3], ["fp4", 128, 20]] as const) {
    const [N, K] = [24, 200];
    const dense = Tensor.fromArray(gpu, rng.normalArray(N * K, 0, 0.05), [N, K]);
    const w = await quantizeNF4(gpu, dense, { quantType, blocksize });
    const x = Tensor.fromArray(gpu, rng.normalArray(M * K), [M, K]);
    const want = await matmul(x, dequantizeNF4(w), { transB: true }).toFloat32();
    const got = await nf4Linear(x, w).toFloat32();
    assertClose(got, want, { rtol: 1e-4, atol: 2e-5 * maxAbs(want) }, `${quantType} block ${blocksize} M=${M}`);
  }
  gpu.destroy();
});

Deno.test("nf4Linear: f16 without shader-f16 is an error", async () => {
  const off = await requestGpu({ disableFeatures: ["shaderF16"] });
  const { w: w0 } = randomQuantized(off, new Rng(1), 8, 64);
  assert.throws(
    () => nf4Linear(Tensor.empty(off, [20, 64]), w0, { precision: "f16" }),
    /nf4Linear: f16 precision needs the shader-f16 feature, absent on/,
  );
  off.destroy();
});

Deno.test({
  name: "nf4Linear: f16 GEMM and dY·deq(W) within f16 rounding of float64",
  ignore: !HAS_F16,
}, async () => {
  const gpu = await requestGpu();
  const rng = new Rng(5);
  for (const [M, N, K] of [[40, 70, 200], [17, 33, 61]]) {
    const { w, deq } = randomQuantized(gpu, rng, N, K);
    const x = rng.normalArray(M * K);
    const dy = rng.normalArray(M * N);
    const tx = Tensor.fromArray(gpu, x, [M, K]);
    const tdy = Tensor.fromArray(gpu, dy, [M, N]);
    const y = await nf4Linear(tx, w, { path: "gemm", precision: "f16" }).toFloat32();
    const dx = await nf4LinearGradInput(tdy, w, { precision: "f16" }).toFloat32();
    // x and deq(W) rounded to f16 (2^-11 relative each), 16-term f16 slice sums: ~1e-3 relative error.
    const wantY = refMatmul(x, deq, M, N, K, { transB: true });
    const wantDx = refMatmul(dy, deq, M, K, N, {});
    for (const [got, want, what] of [[y, wantY, "y"], [dx, wantDx, "dx"]] as const) {
      const e = relError(got, want);
      assert.ok(e < 2e-3, `${what} [${M},${N},${K}] f16: relative L2 error ${e}`);
      assertClose(got, want, { atol: 1e-2 * maxAbs(want) }, `${what} [${M},${N},${K}] f16`);
    }
  }
  gpu.destroy();
});
