import assert from "node:assert/strict";
import { requestGpu, Rng, Tensor } from "../mod.ts";
import { matmul, type MatmulDropout } from "../lib/kernels/mod.ts";
import { assertClose } from "./_assert.ts";
import { refMatmul } from "./_qlinear_ref.ts";

Deno.test("matmul: every transpose, alpha, accumulate and dropout mode against a float64 reference", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(1);
  // Ragged shapes (not multiples of the 16/32/64 tiles) and tiny ones.
  const shapes = [[1, 1, 1], [3, 5, 7], [17, 33, 70], [70, 9, 41], [65, 66, 130]];
  const drops: (MatmulDropout | undefined)[] = [
    undefined,
    { p: 0.3, seed: 11, on: "a" },
    { p: 0.5, seed: 5, on: "b" },
    { p: 0.2, seed: 9, on: "out" },
  ];
  let t = 0;
  for (const [M, N, K] of shapes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const a = rng.normalArray(M * K);
        const b = rng.normalArray(K * N);
        const c = rng.normalArray(M * N);
        const dropout = drops[t++ % 4];
        const accumulate = t % 3 === 0;
        const alpha = accumulate ? -0.75 : 1;
        const ta = Tensor.fromArray(gpu, a, transA ? [K, M] : [M, K]);
        const tb = Tensor.fromArray(gpu, b, transB ? [N, K] : [K, N]);
        const out = Tensor.fromArray(gpu, c, [M, N]);
        matmul(ta, tb, { transA, transB, alpha, accumulate, out, dropout });
        const want = refMatmul(a, b, M, N, K, { transA, transB, alpha, c: accumulate ? c : undefined, dropout });
        const label = `[${M},${N},${K}] tA=${transA} tB=${transB} acc=${accumulate} drop=${dropout?.on}`;
        // f32 sums of K unit-variance products: rounding error grows like sqrt(K)·2^-24 per term.
        assertClose(await out.toFloat32(), want, { rtol: 1e-5, atol: 1e-5 * Math.sqrt(K) }, label);
        ta.destroy();
        tb.destroy();
        out.destroy();
      }
    }
  }
  gpu.destroy();
});

Deno.test("matmul: shape and dtype mismatches are clear errors before dispatch", async () => {
  const gpu = await requestGpu();
  const a = Tensor.empty(gpu, [2, 3], { label: "lhs" });
  const b = Tensor.empty(gpu, [4, 2], { label: "rhs" });
  assert.throws(() => matmul(a, b), /inner dimensions differ: a "lhs" \[2,3\] · b "rhs" \[4,2\]/);
  assert.throws(
    () => matmul(a, Tensor.empty(gpu, [4, 3]), { transB: true, accumulate: true }),
    /accumulate needs an out/,
  );
  const half = Tensor.empty(gpu, [3, 4], { dtype: "f16", label: "half" });
  // A 16-bit b is a frozen weight held as stored (see the bf16 test below); a must be f32, b a float type.
  assert.throws(() => matmul(half, b), /a "half" is \[3,4\] f16, expected a 2-D f32 matrix/);
  const ids = Tensor.empty(gpu, [3, 4], { dtype: "u32", label: "ids" });
  assert.throws(() => matmul(a, ids), /b "ids" is \[3,4\] u32, expected f32, or bf16\/f16/);
  const out = Tensor.empty(gpu, [2, 5], { label: "dst" });
  assert.throws(() => matmul(a, Tensor.empty(gpu, [3, 4]), { out }), /out "dst" is \[2,5\], expected \[2,4\]/);
  gpu.destroy();
});
