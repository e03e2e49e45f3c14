import assert from "node:assert/strict";
import { type Gpu, type LoraAdapter, qlinearBackward, qlinearForward, requestGpu, Rng, Tensor } from "../mod.ts";
import { GEMV_MAX_ROWS, nf4Linear } from "../lib/kernels/mod.ts";
import { checkBindingSize } from "../lib/kernels/_kernel.ts";
import { assertClose, finiteDifference, relError } from "./_assert.ts";
import { close, type LayerRef, randomQuantized, refBackward, refForward } from "./_qlinear_ref.ts";

function loraCase(gpu: Awaited<ReturnType<typeof requestGpu>>, rng: Rng, L: LayerRef) {
  const { M, N, K, r } = L;
  const q = randomQuantized(gpu, rng, N, K);
  const x = rng.normalArray(M * K);
  const a = rng.uniformArray(r * K, -1 / Math.sqrt(K), 1 / Math.sqrt(K));
  const b = rng.normalArray(N * r, 0, 0.5);
  const lora: LoraAdapter = {
    a: Tensor.fromArray(gpu, a, [r, K], { label: "A" }),
    b: Tensor.fromArray(gpu, b, [N, r], { label: "B" }),
    scale: L.scale,
    dropout: L.p,
  };
  const bias = L.bias ? Tensor.fromArray(gpu, Float32Array.from(L.bias), [N]) : undefined;
  return { ...q, x, a, b, lora, bias, tx: Tensor.fromArray(gpu, x, [M, K], { label: "x" }) };
}

Deno.test("qlinear: forward and backward against float64 references (r 1..64, bias, dropout, both paths)", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(3);
  const layers: LayerRef[] = [
    { M: 4, N: 72, K: 136, r: 64, scale: 0.25, p: 0.1, seed: 5 },
    { M: 1, N: 20, K: 100, r: 1, scale: 2, p: 0, seed: 0, bias: new Float64Array(20).map((_, i) => i / 10) },
    { M: 40, N: 50, K: 72, r: 8, scale: 0.5, p: 0.25, seed: 9, bias: new Float64Array(50).fill(-1) },
    { M: 12, N: 33, K: 61, r: 16, scale: 1, p: 0.5, seed: 77 },
  ];
  for (const L of layers) {
    const c = loraCase(gpu, rng, L);
    const label = `M=${L.M} N=${L.N} K=${L.K} r=${L.r} p=${L.p} bias=${!!L.bias}`;
    const ref = refForward(L, c.x, c.deq, c.a, c.b);
    const dy = rng.normalArray(L.M * L.N);
    const gref = refBackward(L, dy, c.x, c.deq, c.a, c.b);
    const paths = L.M <= GEMV_MAX_ROWS ? ["gemv", "gemm"] as const : ["gemm"] as const;
    for (const path of paths) {
      const { y, xa } = qlinearForward(c.tx, c.w, c.lora, { bias: c.bias, seed: L.seed, path });
      close(await y.toFloat32(), ref.y, `y ${path} ${label}`);
      close(await xa.toFloat32(), ref.xa, `xa ${path} ${label}`);
      const g = qlinearBackward(Tensor.fromArray(gpu, dy, [L.M, L.N]), c.tx, xa, c.w, c.lora, { seed: L.seed });
      close(await g.dx!.toFloat32(), gref.dx, `dx ${label}`);
      close(await g.dA.toFloat32(), gref.dA, `dA ${label}`);
      close(await g.dB.toFloat32(), gref.dB, `dB ${label}`);
    }
    if (gpu.features.shaderF16) {
      // f16 quantized products (LoRA products stay f32): within f16 rounding, ~1e-3 relative.
      const precision = "f16";
      const { y, xa } = qlinearForward(c.tx, c.w, c.lora, { bias: c.bias, seed: L.seed, path: "gemm", precision });
      assert.ok(relError(await y.toFloat32(), ref.y) < 2e-3, `y f16 ${label}`);
      const tdy = Tensor.fromArray(gpu, dy, [L.M, L.N]);
      const g = qlinearBackward(tdy, c.tx, xa, c.w, c.lora, { seed: L.seed, precision });
      assert.ok(relError(await g.dx!.toFloat32(), gref.dx) < 2e-3, `dx f16 ${label}`);
      close(await g.dA.toFloat32(), gref.dA, `dA (f16 run) ${label}`);
    }
  }
  gpu.destroy();
});

Deno.test("qlinear: dX, dA, dB match finite differences of sum(Y·G) (float64), with dropout; accumulation adds", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(11);
  const L: LayerRef = { M: 3, N: 6, K: 20, r: 2, scale: 0.75, p: 0.3, seed: 123, bias: new Float64Array(6).fill(0.5) };
  const c = loraCase(gpu, rng, L);
  const G = rng.normalArray(L.M * L.N);
  const loss = (x: ArrayLike<number>, a: ArrayLike<number>, b: ArrayLike<number>) =>
    refForward(L, x, c.deq, a, b).y.reduce((s, v, i) => s + v * G[i], 0);
  const x64 = Float64Array.from(c.x);
  const a64 = Float64Array.from(c.a);
  const b64 = Float64Array.from(c.b);
  const fdX = finiteDifference((v) => loss(v, a64, b64), x64);
  const fdA = finiteDifference((v) => loss(x64, v, b64), a64);
  const fdB = finiteDifference((v) => loss(x64, a64, v), b64);
  const { xa } = qlinearForward(c.tx, c.w, c.lora, { bias: c.bias, seed: L.seed });
  const dy = Tensor.fromArray(gpu, G, [L.M, L.N]);
  const g = qlinearBackward(dy, c.tx, xa, c.w, c.lora, { seed: L.seed });
  // The loss is linear in each of x, A, B separately: central differences are exact up to float64 rounding
  // (~1e-12/eps); the GPU side is f32.
  const tol = { rtol: 1e-4, atol: 1e-4 };
  assertClose(await g.dx!.toFloat32(), fdX, tol, "dX vs FD");
  assertClose(await g.dA.toFloat32(), fdA, tol, "dA vs FD");
  assertClose(await g.dB.toFloat32(), fdB, tol, "dB vs FD");
  // A second micro-batch accumulates into the same gradients; no dX asked.
  const g2 = qlinearBackward(dy, c.tx, xa, c.w, c.lora, {
    seed: L.seed,
    dA: g.dA,
    dB: g.dB,
    accumulate: true,
    needDx: false,
  });
  assert.equal(g2.dx, null);
  assertClose(await g2.dA.toFloat32(), fdA.map((v) => 2 * v), tol, "dA accumulated");
  assertClose(await g2.dB.toFloat32(), fdB.map((v) => 2 * v), tol, "dB accumulated");
  // Into existing tensors (a residual; dX summed over projections): the same values plus the prior contents.
  const prior = rng.normalArray(L.M * L.N);
  const y0 = await qlinearForward(c.tx, c.w, c.lora, { bias: c.bias, seed: L.seed }).y.toFloat32();
  const into = Tensor.fromArray(gpu, prior, [L.M, L.N]);
  const { y: y1 } = qlinearForward(c.tx, c.w, c.lora, { bias: c.bias, seed: L.seed, out: into, accumulate: true });
  assert.equal(y1, into);
  assert.deepEqual(await into.toFloat32(), y0.map((v, i) => v + prior[i])); // one f32 addition
  const priorDx = rng.normalArray(L.M * L.K);
  const dxInto = Tensor.fromArray(gpu, priorDx, [L.M, L.K]);
  const g3 = qlinearBackward(dy, c.tx, xa, c.w, c.lora, { seed: L.seed, dx: dxInto, accumulateDx: true });
  assert.equal(g3.dx, dxInto);
  assertClose(await dxInto.toFloat32(), fdX.map((v, i) => v + priorDx[i]), tol, "dX added into a prior vs FD");
  gpu.destroy();
});

Deno.test("qlinear: mismatched shapes, dtypes and ranks are clear errors before dispatch", async () => {
  const gpu = await requestGpu();
  const { w } = randomQuantized(gpu, new Rng(1), 8, 16, { label: "q_proj" });
  const lora = (r: number, K = 16, N = 8): LoraAdapter => ({
    a: Tensor.empty(gpu, [r, K], { label: "A" }),
    b: Tensor.empty(gpu, [N, r], { label: "B" }),
    scale: 1,
  });
  const x = Tensor.empty(gpu, [2, 16], { label: "x" });
  assert.throws(
    () => qlinearForward(Tensor.empty(gpu, [2, 15], { label: "x" }), w, lora(2)),
    /qlinear "q_proj" \[8,16\]: input "x" is \[2,15\] f32, expected \[\*,16\] f32/,
  );
  assert.throws(
    () => qlinearForward(Tensor.empty(gpu, [2, 16], { dtype: "f16", label: "h" }), w, lora(2)),
    /input "h" is \[2,16\] f16/,
  );
  assert.throws(() => qlinearForward(x, w, lora(9)), /LoRA rank 9 \(A "A" \[9,16\]\) must be in \[1, 8\]/);
  assert.throws(() => qlinearForward(x, w, lora(2, 12)), /LoRA A "A" is \[2,12\] f32, expected \[\*,16\] f32/);
  assert.throws(() => qlinearForward(x, w, lora(2, 16, 7)), /LoRA B "B" is \[7,2\] f32, expected \[8,2\] f32/);
  assert.throws(
    () => qlinearForward(x, w, lora(2), { bias: Tensor.empty(gpu, [9], { label: "b" }) }),
    /bias "b" is \[9\]/,
  );
  assert.throws(() => qlinearForward(x, w, { ...lora(2), dropout: 1 }), /LoRA dropout 1 is outside \[0, 1\)/);
  const xa = Tensor.empty(gpu, [2, 2], { label: "xa" });
  assert.throws(
    () => qlinearBackward(Tensor.empty(gpu, [2, 8]), x, Tensor.empty(gpu, [2, 3], { label: "xa" }), w, lora(2)),
    /saved XA "xa" is \[2,3\] f32, expected \[2,2\]/,
  );
  assert.throws(
    () => qlinearBackward(Tensor.empty(gpu, [2, 8]), x, xa, w, lora(2), { accumulate: true }),
    /accumulate needs dA and dB/,
  );
  assert.throws(
    () => nf4Linear(Tensor.empty(gpu, [17, 16]), w, { path: "gemv" }),
    /gemv path takes at most 16 rows, got 17/,
  );
  // Operands over one storage binding are refused before allocating (a fake device with a 1 KiB limit).
  const tiny = { maxBindingBytes: 1024 } as Gpu;
  assert.throws(
    () => checkBindingSize(tiny, "nf4Linear", [["input", 64], ["output", 4096]]),
    /nf4Linear: output takes 4096 bytes, over the storage binding limit of 1024 bytes/,
  );
  gpu.destroy();
});
