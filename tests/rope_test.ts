import assert from "node:assert/strict";
import { requestGpu, Rng, Tensor } from "../mod.ts";
import { ropeApply } from "../lib/kernels/mod.ts";
import { ropeInvFreq, ropeTable } from "../lib/model/mod.ts";
import { assertClose, finiteDifference } from "./_assert.ts";
import { dotWith, ropeRef } from "./_ops_ref.ts";

const llama3 = { type: "llama3" as const, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };

/** Asserts every value is within `ulps` float32 steps of the golden bit pattern (same sign, all positive here). */
function assertUlps(got: Float32Array, from: number, want: number[], ulps: number, label: string): void {
  const g = new Uint32Array(got.buffer);
  want.forEach((w, i) =>
    assert.ok(
      Math.abs(g[from + i] - w) <= ulps,
      `${label}[${from + i}]: ${g[from + i].toString(16)} vs ${w.toString(16)}`,
    )
  );
}

Deno.test("ropeInvFreq: within 2 ulp of transformers' float32 default and llama3 parameters", () => {
  // Golden bits: the modeling_rope_utils.py formulas in numpy float32 (torch's f32 op order). pow's last bit differs
  // between libms (glibc powf, Sleef in torch, float64 pow here), so up to 2 ulp; the llama3 bands must agree.
  const def64 = ropeInvFreq({ headDim: 64, ropeTheta: 10000, ropeScaling: null });
  assertUlps(def64, 0, [0x3f800000, 0x3f3ff911, 0x3f0ff59a, 0x3ed7e89b, 0x3ea1e89b, 0x3e72d425], 2, "default");
  assertUlps(def64, 31, [0x390bd472], 2, "default");
  const l128 = ropeInvFreq({ headDim: 128, ropeTheta: 500000, ropeScaling: { ...llama3, factor: 8 } });
  // 28..35 straddle the high-frequency bound, the smoothed band and the low-frequency bound.
  assertUlps(
    l128,
    28,
    [0x3b527720, 0x3b0dfd06, 0x3ab3d11d, 0x3a60979e, 0x3a0995d2, 0x39a3f108, 0x393b2dd2, 0x38c86887],
    2,
    "llama3",
  );
  assertUlps(l128, 63, [0x34a4c2ff], 2, "llama3");
  const l64 = ropeInvFreq({ headDim: 64, ropeTheta: 500000, ropeScaling: { ...llama3, factor: 32 } });
  assertUlps(l64, 14, [0x3b527720, 0x3aa9279b, 0x39e13620, 0x38cb98f7, 0x37a3418d], 2, "llama3 factor 32");
  const lin = ropeInvFreq({ headDim: 8, ropeTheta: 10000, ropeScaling: { type: "linear", factor: 4 } });
  assert.deepEqual(
    [...lin],
    [...ropeInvFreq({ headDim: 8, ropeTheta: 10000, ropeScaling: null })].map((v) => Math.fround(v / 4)),
  );
  assert.throws(() => ropeInvFreq({ headDim: 7, ropeTheta: 1, ropeScaling: null }), /head dimension 7/);
});

Deno.test("ropeApply: q and k in one dispatch match the reference; inverse undoes it; offsets per sequence", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(10);
  for (const D of [16, 64]) {
    const B = 2, T = 7, offset = 5;
    const inv = ropeInvFreq({ headDim: D, ropeTheta: 10000, ropeScaling: null });
    const table = ropeTable(gpu, inv, 40);
    // q with 3 heads, k with 2 (grouped-query attention): each rotated by its own layout.
    const parts = [3, 2].map((nHeads) => {
      const xs = rng.normalArray(B * T * nHeads * D);
      return { nHeads, xs, x: Tensor.fromArray(gpu, xs, [B * T, nHeads * D]) };
    });
    const [q, k] = parts;
    const heads = { nHeads: q.nHeads, nKvHeads: k.nHeads };
    ropeApply(gpu, q.x, k.x, table, { T, ...heads, offset });
    for (const { nHeads, xs, x } of parts) {
      // The table rounds angles to f32 (positions < 40: angle error < 3e-6).
      const want = ropeRef(xs, inv, { T, nHeads, headDim: D, offset });
      assertClose(await x.toFloat32(), want, { atol: 2e-5 }, `D=${D} heads=${nHeads}`);
    }
    ropeApply(gpu, q.x, k.x, table, { T, ...heads, offset, inverse: true });
    for (const { nHeads, xs, x } of parts) {
      assertClose(await x.toFloat32(), xs, { atol: 2e-6 }, `round trip D=${D} heads=${nHeads}`);
    }
    // Per-sequence offsets: sequence 1 starts 9 positions later.
    const offs = Tensor.fromArray(gpu, new Uint32Array([0, 9]), [2]);
    ropeApply(gpu, q.x, k.x, table, { T, ...heads, offset: 2, offsets: offs });
    for (const { nHeads, xs, x } of parts) {
      const got = await x.toFloat32();
      const half = T * nHeads * D;
      const ref0 = ropeRef(xs.subarray(0, half), inv, { T, nHeads, headDim: D, offset: 2 });
      const ref1 = ropeRef(xs.subarray(half), inv, { T, nHeads, headDim: D, offset: 11 });
      assertClose(got, [...ref0, ...ref1], { atol: 2e-5 }, `offsets D=${D} heads=${nHeads}`);
    }
  }
  gpu.destroy();
});

Deno.test("ropeApply: inverse rotation is the backward pass (finite differences); table bounds", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(11);
  const T = 3, nHeads = 2, nKvHeads = 1, D = 16;
  const inv = ropeInvFreq({ headDim: D, ropeTheta: 10000, ropeScaling: { ...llama3, factor: 8 } });
  const parts = [nHeads, nKvHeads].map((h) => {
    const xs = rng.normalArray(T * h * D), dys = rng.normalArray(T * h * D);
    return { h, xs, dys, dx: Tensor.fromArray(gpu, dys, [T, h * D]) };
  });
  const [dq, dk] = parts.map((p) => p.dx);
  const table = ropeTable(gpu, inv, 8);
  ropeApply(gpu, dq, dk, table, { T, nHeads, nKvHeads, offset: 4, inverse: true });
  for (const { h, xs, dys, dx } of parts) {
    const fd = finiteDifference(
      (v) => dotWith(ropeRef(v, inv, { T, nHeads: h, headDim: D, offset: 4 }), dys),
      Float64Array.from(xs),
    );
    assertClose(await dx.toFloat32(), fd, { atol: 2e-5 }, `d${h === nHeads ? "q" : "k"} vs finite differences`);
  }
  const layout = { T, nHeads, nKvHeads };
  assert.throws(() => ropeApply(gpu, dq, dk, table, { ...layout, offset: 6 }), /positions up to 8 are past the table/);
  assert.throws(() => ropeApply(gpu, dq, dq, table, layout), /RoPE k .* expected 48 elements/);
  assert.throws(() => ropeApply(gpu, dk, dk, table, { ...layout, nHeads: 1 }), /shares a buffer/);
  const offs = Tensor.fromArray(gpu, new Uint32Array([7]), [1]);
  ropeApply(gpu, dq, dk, table, { ...layout, offsets: offs });
  for (const { h, dx } of parts) {
    const got = await dx.toFloat32();
    assert.ok(!Number.isNaN(got[0]) && Number.isNaN(got[h * D]), "position 8 is past the table: NaN");
  }
  gpu.destroy();
});
