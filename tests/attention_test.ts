import assert from "node:assert/strict";
import { type Gpu, requestGpu, Rng, Tensor } from "../mod.ts";
import { attentionBackward, attentionForward, type AttentionShape } from "../lib/kernels/mod.ts";
import { assertClose, finiteDifference } from "./_assert.ts";
import { attentionBackwardRef, attentionRef, type AttnShape, dotWith } from "./_ops_ref.ts";

interface Case extends AttnShape {
  name: string;
}

function upload(gpu: Gpu, c: Case): AttentionShape {
  return {
    B: c.B,
    T: c.Tq,
    Tk: c.Tk,
    nHeads: c.nHeads,
    nKvHeads: c.nKvHeads,
    headDim: c.headDim,
    qOffset: c.qOffset,
    seqLens: c.seqLens && Tensor.fromArray(gpu, new Uint32Array(c.seqLens), [c.B]),
    qOffsets: c.qOffsets && Tensor.fromArray(gpu, new Uint32Array(c.qOffsets), [c.B]),
  };
}

const CASES: Case[] = [
  { name: "GQA 2, D 16, padding", B: 2, Tq: 37, Tk: 37, nHeads: 4, nKvHeads: 2, headDim: 16, seqLens: [37, 20] },
  { name: "GQA 4, D 64, T 70", B: 1, Tq: 70, Tk: 70, nHeads: 4, nKvHeads: 1, headDim: 64 },
  { name: "GQA 2, D 128", B: 1, Tq: 19, Tk: 19, nHeads: 2, nKvHeads: 1, headDim: 128 },
  { name: "MHA, D 32, short rows", B: 3, Tq: 9, Tk: 9, nHeads: 2, nKvHeads: 2, headDim: 32, seqLens: [9, 1, 5] },
  // Decoding: 3 new rows against a KV cache of capacity 24, per-sequence cache lengths.
  {
    name: "decode, cache",
    B: 2,
    Tq: 3,
    Tk: 24,
    nHeads: 4,
    nKvHeads: 2,
    headDim: 16,
    qOffset: 1,
    qOffsets: [4, 16],
    seqLens: [8, 20],
  },
];

Deno.test("attention: forward and backward match the float64 reference (GQA 1/2/4, D 16/32/64/128, padding, cache)", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(12);
  for (const c of CASES) {
    const qn = c.B * c.Tq * c.nHeads * c.headDim, kn = c.B * c.Tk * c.nKvHeads * c.headDim;
    const qs = rng.normalArray(qn), ks = rng.normalArray(kn), vs = rng.normalArray(kn), dos = rng.normalArray(qn);
    const q = Tensor.fromArray(gpu, qs, [c.B, c.Tq, c.nHeads, c.headDim]);
    const k = Tensor.fromArray(gpu, ks, [c.B, c.Tk, c.nKvHeads, c.headDim]);
    const v = Tensor.fromArray(gpu, vs, [c.B, c.Tk, c.nKvHeads, c.headDim]);
    const shape = upload(gpu, c);
    const fwd = attentionForward(gpu, q, k, v, shape);
    const g = attentionBackward(gpu, q, k, v, fwd, Tensor.fromArray(gpu, dos, q.shape), shape);
    const ref = attentionRef(qs, ks, vs, c);
    const gref = attentionBackwardRef(qs, ks, vs, dos, c);
    // f32 dot products of length D and softmax sums over <= 70 keys: errors ~1e-6 of O(1) values.
    assertClose(await fwd.out.toFloat32(), ref.out, { rtol: 1e-4, atol: 1e-5 }, `${c.name}: out`);
    assertClose(await fwd.lse.toFloat32(), ref.lse, { rtol: 1e-5, atol: 1e-5 }, `${c.name}: lse`);
    assertClose(await g.dq.toFloat32(), gref.dq, { rtol: 1e-3, atol: 2e-5 }, `${c.name}: dq`);
    assertClose(await g.dk.toFloat32(), gref.dk, { rtol: 1e-3, atol: 2e-5 }, `${c.name}: dk`);
    assertClose(await g.dv.toFloat32(), gref.dv, { rtol: 1e-3, atol: 2e-5 }, `${c.name}: dv`);
  }
  gpu.destroy();
});

Deno.test("attention: backward matches finite differences of the float64 forward", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(13);
  const c: Case = { name: "tiny", B: 2, Tq: 5, Tk: 5, nHeads: 2, nKvHeads: 1, headDim: 4, seqLens: [5, 3] };
  const qn = c.B * c.Tq * c.nHeads * c.headDim, kn = c.B * c.Tk * c.nKvHeads * c.headDim;
  const qs = rng.normalArray(qn), ks = rng.normalArray(kn), vs = rng.normalArray(kn), dos = rng.normalArray(qn);
  const [q, k, v] = [qs, ks, vs].map((a) => Tensor.fromArray(gpu, a, [a.length]));
  const shape = upload(gpu, c);
  const fwd = attentionForward(gpu, q, k, v, shape);
  const g = attentionBackward(gpu, q, k, v, fwd, Tensor.fromArray(gpu, dos, [qn]), shape);
  const loss = (a: ArrayLike<number>, b: ArrayLike<number>, d: ArrayLike<number>) =>
    dotWith(attentionRef(a, b, d, c).out, dos);
  const fdq = finiteDifference((x) => loss(x, ks, vs), Float64Array.from(qs));
  const fdk = finiteDifference((x) => loss(qs, x, vs), Float64Array.from(ks));
  const fdv = finiteDifference((x) => loss(qs, ks, x), Float64Array.from(vs));
  assertClose(await g.dq.toFloat32(), fdq, { rtol: 1e-3, atol: 1e-5 }, "dq vs finite differences");
  assertClose(await g.dk.toFloat32(), fdk, { rtol: 1e-3, atol: 1e-5 }, "dk vs finite differences");
  assertClose(await g.dv.toFloat32(), fdv, { rtol: 1e-3, atol: 1e-5 }, "dv vs finite differences");
  gpu.destroy();
});

Deno.test("attention: decoding one row against a cache equals the matching row of full attention", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(14);
  const T = 11, nHeads = 2, D = 32;
  const qs = rng.normalArray(T * nHeads * D),
    ks = rng.normalArray(T * nHeads * D),
    vs = rng.normalArray(T * nHeads * D);
  const k = Tensor.fromArray(gpu, ks, [1, T, nHeads, D]);
  const v = Tensor.fromArray(gpu, vs, [1, T, nHeads, D]);
  const full = attentionForward(gpu, Tensor.fromArray(gpu, qs, [1, T, nHeads, D]), k, v, {
    B: 1,
    T,
    nHeads,
    nKvHeads: nHeads,
    headDim: D,
  });
  const want = (await full.out.toFloat32()).subarray(6 * nHeads * D, 7 * nHeads * D);
  // Row 6 alone; the cache holds all 11 keys but only 7 are valid.
  const q6 = Tensor.fromArray(gpu, qs.subarray(6 * nHeads * D, 7 * nHeads * D), [1, 1, nHeads, D]);
  const one = attentionForward(gpu, q6, k, v, {
    B: 1,
    T: 1,
    Tk: T,
    nHeads,
    nKvHeads: nHeads,
    headDim: D,
    qOffset: 6,
    seqLens: Tensor.fromArray(gpu, new Uint32Array([7]), [1]),
  });
  assertClose(await one.out.toFloat32(), want, { rtol: 1e-5, atol: 1e-6 }, "decoded row");
  gpu.destroy();
});

Deno.test("attention: bad shapes are clear errors", async () => {
  const gpu = await requestGpu();
  const t = Tensor.empty(gpu, [24]);
  assert.throws(
    () => attentionForward(gpu, t, t, t, { B: 1, T: 1, nHeads: 3, nKvHeads: 2, headDim: 8 }),
    /3 query heads are not a multiple of 2 KV heads/,
  );
  assert.throws(
    () => attentionForward(gpu, t, t, t, { B: 1, T: 4, nHeads: 1, nKvHeads: 1, headDim: 6 }),
    /head dimension 6 must be a multiple of 4/,
  );
  assert.throws(
    () => attentionForward(gpu, t, t, t, { B: 1, T: 4, nHeads: 1, nKvHeads: 1, headDim: 8 }),
    /Attention q "tensor" is \[24\] f32, expected 32 elements of f32/,
  );
  gpu.destroy();
});
