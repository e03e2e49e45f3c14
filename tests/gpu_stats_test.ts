import assert from "node:assert/strict";
import { LlamaModel, quantizeNF4, requestGpu, Rng, Tensor } from "../mod.ts";
import { formatProfile, type KernelProfile } from "../lib/gpu/mod.ts";
import { matmul, nf4Linear } from "../lib/kernels/mod.ts";
import { writeTinyLlama } from "../lib/testing/mod.ts";

const gpu = await requestGpu();

const add = (acc: Tensor, x: Tensor) =>
  acc.gpu.dispatch({
    kernel: "residual_add",
    bindings: [acc.buffer, x.buffer, new Uint32Array([4, 0])],
    workgroups: 1,
  });

Deno.test("gpu stats: repeated dispatches share one pass, one bind group and one uniform upload; free does not submit", async () => {
  const gpu = await requestGpu();
  const acc = Tensor.empty(gpu, [4], { label: "acc" });
  const x = Tensor.fromArray(gpu, new Float32Array([1, 2, 3, 4]), [4], { label: "x" });
  await gpu.sync();
  gpu.resetStats();
  for (let i = 0; i < 10; i++) add(acc, x);
  const tmp = Tensor.empty(gpu, [4], { label: "tmp" });
  add(tmp, x);
  tmp.destroy();
  const s = gpu.stats();
  assert.deepEqual([s.dispatches, s.passes, s.submits, s.bindGroupsCreated, s.buffersCreated], [11, 1, 0, 2, 1]);
  await gpu.sync();
  assert.equal(gpu.stats().writeBuffers, 1);
  gpu.resetStats();
  add(acc, x);
  await gpu.sync();
  assert.deepEqual([gpu.stats().bindGroupsCreated, gpu.stats().writeBuffers], [0, 0]);
  // Residual add with alpha 0 bits: acc += 0 * x, so acc stays zero; the values are what the kernel computes.
  assert.deepEqual([...await acc.toFloat32()], [0, 0, 0, 0]);
  gpu.destroy();
});

Deno.test("gpu profile: per-kernel calls, GPU time where timestamps exist, counts per step", async () => {
  const gpu = await requestGpu();
  const acc = Tensor.empty(gpu, [4], { label: "acc" });
  const x = Tensor.empty(gpu, [4], { label: "x" });
  const p = await gpu.profile(() => {
    for (let i = 0; i < 6; i++) add(acc, x);
  }, 2);
  assert.equal(p.kernels.length, 1);
  assert.equal(p.kernels[0].calls, 3);
  assert.equal(p.stats.dispatches, 3);
  assert.equal(p.timer, gpu.features.timestampQuery ? "timestamp" : "n/a");
  if (p.timer === "timestamp") assert.ok(p.kernels[0].gpuMs! >= 0 && p.kernels[0].share === 1);
  assert.match(formatProfile(p), /residual_add/);
  await assert.rejects(gpu.stopProfile(), /no profile is running/);
  gpu.destroy();
});

Deno.test("gpu profile: nf4Linear and matmul state their FLOPs and bytes exactly", async () => {
  const rng = new Rng(3);
  const [M, N, K, r] = [3, 8, 64, 2];
  const w = await quantizeNF4(gpu, Tensor.fromArray(gpu, rng.normalArray(N * K), [N, K])); // 8 blocks of 64
  const x = Tensor.fromArray(gpu, rng.normalArray(M * K), [M, K]);
  const lora = { xa: Tensor.fromArray(gpu, rng.normalArray(M * r), [M, r]), b: Tensor.empty(gpu, [N, r]), scale: 1 };
  const [a, b] = [Tensor.fromArray(gpu, rng.normalArray(5 * 7), [5, 7]), Tensor.empty(gpu, [7, 3])];
  const p = await gpu.profile(() => {
    nf4Linear(x, w, { lora });
    matmul(a, b);
  });
  const row = (kernel: string) => p.kernels.find((k) => k.kernel === kernel)!;
  // The frozen product and the fused LoRA term; bytes: the weight (256 code bytes, 8 absmax codes, one f32 second-level
  // scale, the f32 offset), x, out, XA and B.
  assert.deepEqual([row("qlinear_nf4.gemv").flops, row("qlinear_nf4.gemv").bytes], [
    2 * M * N * K + 2 * M * N * r,
    256 + 8 + 4 + 4 + 4 * (M * K + M * N + M * r + N * r),
  ]);
  assert.deepEqual([row("matmul_f32").flops, row("matmul_f32").bytes], [2 * 5 * 3 * 7, 4 * (5 * 7 + 7 * 3 + 5 * 3)]);
});

Deno.test({
  name: "gpu profile: a QLoRA training step reports GFLOP/s for the products and GB/s for RMSNorm",
  ignore: !gpu.features.timestampQuery,
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeTinyLlama(dir, { layers: 1 });
    const model = await LlamaModel.load(gpu, dir, { lora: { r: 4 } });
    const ids = Int32Array.from({ length: 24 }, (_, i) => (i * 7 + 3) % 200);
    const batch = { batchSize: 2, seqLen: 12, inputIds: ids, labels: ids };
    await model.forwardBackward(batch); // compiles the pipelines outside the profile
    const p = await gpu.profile(() => model.forwardBackward(batch).then(() => {}));
    model.destroy();
    assert.equal(p.untimed, 0);
    const finite = (v: number | null) => v !== null && Number.isFinite(v) && v > 0;
    const rows = (prefix: string) => p.kernels.filter((k) => k.kernel.startsWith(prefix));
    const products: KernelProfile[] = [...rows("qlinear_nf4."), ...rows("matmul_f32")];
    // 24 rows: the tiled forward product (gemm) and the input gradient (dx).
    assert.deepEqual(rows("qlinear_nf4.").map((k) => k.kernel).sort(), ["qlinear_nf4.dx", "qlinear_nf4.gemm"]);
    assert.ok(rows("matmul_f32").length === 1);
    for (const k of products) assert.ok(finite(k.gflops), `${k.kernel}: ${k.gflops} GFLOP/s`);
    assert.deepEqual(rows("rms_norm.").map((k) => k.kernel).sort(), ["rms_norm.backward", "rms_norm.forward"]);
    for (const k of rows("rms_norm.")) assert.ok(finite(k.gbps), `${k.kernel}: ${k.gbps} GB/s`);
    // Every kernel of the step states the bytes it moves.
    for (const k of p.kernels) assert.ok(k.bytes > 0, `${k.kernel} states no bytes`);
    assert.match(formatProfile(p), /qlinear_nf4\.gemm +[\d.]+ +[\d.]+ +[\d.]+% +[\d.]+ +[\d.]+/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
