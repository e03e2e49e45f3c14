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

/** Random fused-LoRA operands for `[M, N, K]` at rank `r`, on the host. */
function loraOperands(rng: Rng, M: number, N: number, K: number, r: number) {
  return {
    x: rng.normalArray(M * K),
    bias: rng.normalArray(N),
    xa: rng.normalArray(M * r),
    b: rng.normalArray(N * r),
    prior: rng.normalArray(M * N),
    dy: rng.normalArray(M * N),
    dyb: rng.normalArray(M * r),
    a: rng.normalArray(r * K),
    priorDx: rng.normalArray(M * K),
  };
}

type Operands = ReturnType<typeof loraOperands>;
const SCALE = 0.75;
const DROPOUT = { p: 0.3, seed: 9 };

/** float64 `x·deq(W)ᵀ + bias + s·XA·Bᵀ (+ prior)`. */
function refY(h: Operands, deq: Float64Array, dims: number[], accumulate: boolean): Float64Array {
  const [M, N, K, r] = dims;
  const lora = refMatmul(h.xa, h.b, M, N, r, { transB: true, alpha: SCALE });
  const y = refMatmul(h.x, deq, M, N, K, { transB: true, c: lora });
  return y.map((v, i) => v + h.bias[i % N] + (accumulate ? h.prior[i] : 0));
}

/** float64 `dY·deq(W) + s·mask⊙(dYB·A) (+ prior)`, the mask keyed by the index in dX. */
function refDx(h: Operands, deq: Float64Array, dims: number[], accumulate: boolean): Float64Array {
  const [M, N, K, r] = dims;
  const lora = refMatmul(h.dyb, h.a, M, K, r, { alpha: SCALE, dropout: { ...DROPOUT, on: "out" } });
  return refMatmul(h.dy, deq, M, K, N, { c: lora }).map((v, i) => v + (accumulate ? h.priorDx[i] : 0));
}

/** Both fused products on `gpu`, fresh and accumulated into the priors. */
async function fused(
  gpu: Awaited<ReturnType<typeof requestGpu>>,
  w: Parameters<typeof nf4Linear>[1],
  h: Operands,
  dims: number[],
  opts: { path?: "gemv" | "gemm"; precision?: "f16" } = {},
): Promise<{ y: Float32Array; yAcc: Float32Array; dx: Float32Array; dxAcc: Float32Array }> {
  const [M, N, K, r] = dims;
  const t = (v: Float32Array, shape: number[]) => Tensor.fromArray(gpu, v, shape);
  const x = t(h.x, [M, K]);
  const bias = t(h.bias, [N]);
  const lora = { xa: t(h.xa, [M, r]), b: t(h.b, [N, r]), scale: SCALE };
  const grad = { dyb: t(h.dyb, [M, r]), a: t(h.a, [r, K]), scale: SCALE, dropout: DROPOUT };
  const dy = t(h.dy, [M, N]);
  const yAcc = t(h.prior, [M, N]);
  const dxAcc = t(h.priorDx, [M, K]);
  nf4Linear(x, w, { ...opts, bias, lora, out: yAcc, accumulate: true });
  nf4LinearGradInput(dy, w, { precision: opts.precision, lora: grad, out: dxAcc, accumulate: true });
  return {
    y: await nf4Linear(x, w, { ...opts, bias, lora }).toFloat32(),
    yAcc: await yAcc.toFloat32(),
    dx: await nf4LinearGradInput(dy, w, { precision: opts.precision, lora: grad }).toFloat32(),
    dxAcc: await dxAcc.toFloat32(),
  };
}

Deno.test("nf4Linear, nf4LinearGradInput: fused LoRA terms, dropout mask and accumulation against float64", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(21);
  // gemv at M = 1, 4, 16 (its three row buckets) and gemm; ragged N and K (K % 8 != 0: unaligned groups).
  const cases: [number, number, number, "gemv" | "gemm"][] = [
    [1, 37, 200, "gemv"],
    [4, 33, 61, "gemv"],
    [16, 70, 136, "gemv"],
    [33, 65, 200, "gemm"],
    [17, 300, 130, "gemm"],
  ];
  for (const [M, N, K, path] of cases) {
    const r = 5;
    const { w, deq } = randomQuantized(gpu, rng, N, K);
    const h = loraOperands(rng, M, N, K, r);
    const dims = [M, N, K, r];
    const got = await fused(gpu, w, h, dims, { path });
    const label = `[${M},${N},${K}] r=${r} ${path}`;
    // f32 sums of K + r terms: the tolerance of `close` (2e-5 of the largest output, 1e-4 relative).
    close(got.y, refY(h, deq, dims, false), `y ${label}`);
    close(got.yAcc, refY(h, deq, dims, true), `y accumulated ${label}`);
    close(got.dx, refDx(h, deq, dims, false), `dx ${label}`);
    close(got.dxAcc, refDx(h, deq, dims, true), `dx accumulated ${label}`);
    // The mask drops about p of the LoRA terms: some dX elements are the frozen product alone.
    const frozen = refMatmul(h.dy, deq, M, K, N, {});
    assert.ok(got.dx.some((v, i) => Math.abs(v - frozen[i]) < 1e-5 * maxAbs(frozen)), `dx ${label}: none dropped`);
  }
  gpu.destroy();
});

Deno.test({
  name: "nf4Linear, nf4LinearGradInput: fused LoRA terms with f16 tiles within f16 rounding of float64",
  ignore: !HAS_F16,
}, async () => {
  const gpu = await requestGpu();
  const rng = new Rng(22);
  for (const [M, N, K] of [[40, 70, 200], [17, 33, 61]]) {
    const r = 3;
    const { w, deq } = randomQuantized(gpu, rng, N, K);
    const h = loraOperands(rng, M, N, K, r);
    const dims = [M, N, K, r];
    const got = await fused(gpu, w, h, dims, { path: "gemm", precision: "f16" });
    // The frozen product's f16 tiles: ~1e-3 relative (as the plain f16 test); the LoRA terms are f32.
    const pairs = [
      [got.y, refY(h, deq, dims, false), "y"],
      [got.yAcc, refY(h, deq, dims, true), "y accumulated"],
      [got.dx, refDx(h, deq, dims, false), "dx"],
      [got.dxAcc, refDx(h, deq, dims, true), "dx accumulated"],
    ] as const;
    for (const [g, want, what] of pairs) {
      assert.ok(relError(g, want) < 2e-3, `${what} [${M},${N},${K}] f16: relative L2 error ${relError(g, want)}`);
      assertClose(g, want, { atol: 1e-2 * maxAbs(want) }, `${what} [${M},${N},${K}] f16`);
    }
  }
  gpu.destroy();
});

Deno.test("nf4Linear, nf4LinearGradInput: fused forms split over a small binding limit equal the whole", async () => {
  // M = 70 rows of K = 72 and N = 40 floats, r = 8 (32-byte rows): 5760 bytes gives 16-row ranges (gemm); 2304
  // bytes 8-row ranges (13 rows on the gemv path). Row-local products: equal bits whatever rows are bound; the
  // dropout mask is keyed by the index in the whole dX.
  const [M, N, K, r] = [70, 40, 72, 8];
  const rng = new Rng(23);
  const h = loraOperands(rng, M, N, K, r);
  const whole = await requestGpu();
  const { w: ww, deq } = randomQuantized(whole, new Rng(24), N, K);
  const want = await fused(whole, ww, h, [M, N, K, r], { path: "gemm" });
  close(want.dxAcc, refDx(h, deq, [M, N, K, r], true), "dx accumulated, whole");
  const h13 = loraOperands(rng, 13, N, K, r);
  const want13 = await fused(whole, ww, h13, [13, N, K, r], { path: "gemv" });
  for (
    const [limit, hh, rows, path, expected] of [
      [5760, h, M, "gemm", want],
      [2304, h13, 13, "gemv", want13],
    ] as const
  ) {
    const small = await requestGpu({ maxBindingBytes: limit });
    const { w: ws } = randomQuantized(small, new Rng(24), N, K);
    const got = await fused(small, ws, hh, [rows, N, K, r], { path });
    for (const key of ["y", "yAcc", "dx", "dxAcc"] as const) {
      assert.deepEqual(got[key], expected[key], `${key} ${path} split by ${limit} bytes`);
    }
    small.destroy();
  }
  whole.destroy();
});

Deno.test("nf4Linear, nf4LinearGradInput: fused operands are checked before any dispatch", async () => {
  const gpu = await requestGpu();
  const { w } = randomQuantized(gpu, new Rng(25), 8, 64);
  const x = Tensor.empty(gpu, [2, 64]);
  const b = Tensor.empty(gpu, [8, 3], { label: "B" });
  assert.throws(
    () => nf4Linear(x, w, { lora: { xa: Tensor.empty(gpu, [2, 4], { label: "XA" }), b, scale: 1 } }),
    /nf4Linear: LoRA matrix "B" is \[8,3\] f32, expected \[8,4\] f32/,
  );
  assert.throws(() => nf4Linear(x, w, { accumulate: true }), /nf4Linear: accumulate needs an out tensor/);
  const dy = Tensor.empty(gpu, [2, 8]);
  assert.throws(
    () => nf4LinearGradInput(dy, w, { lora: { dyb: Tensor.empty(gpu, [3, 3], { label: "dYB" }), a: b, scale: 1 } }),
    /nf4LinearGradInput: LoRA rows "dYB" is \[3,3\] f32, expected \[2,\*\] f32/,
  );
  // An output sharing a buffer with an operand (here a view of the adapter's buffer) is refused.
  const { w: square } = randomQuantized(gpu, new Rng(26), 64, 64);
  const arena = Tensor.fromArray(gpu, new Float32Array(512), [512], { label: "arena" });
  const [a, out] = [0, 1024].map((at) => Tensor.view(gpu, arena.buffer, at, [2, 64], { label: `view@${at}` }));
  assert.throws(
    () => nf4Linear(a, square, { out, accumulate: true }),
    /nf4Linear: tensor "view@1024" shares a buffer with another operand/,
  );
  assert.throws(() => nf4LinearGradInput(a, square, { out }), /nf4LinearGradInput: tensor "view@1024" shares a buffer/);
  gpu.destroy();
});
