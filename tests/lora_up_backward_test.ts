import assert from "node:assert/strict";
import { type Gpu, requestGpu, Rng, Tensor } from "../mod.ts";
import { loraUpBackward, matmul } from "../lib/kernels/mod.ts";
import { close, refMatmul } from "./_qlinear_ref.ts";

/** dY, B, XA and a starting dB on `gpu`, from host arrays. */
function upload(gpu: Gpu, h: Record<"dy" | "b" | "xa" | "db", Float32Array>, M: number, N: number, r: number) {
  return {
    dy: Tensor.fromArray(gpu, h.dy, [M, N], { label: "dy" }),
    b: Tensor.fromArray(gpu, h.b, [N, r], { label: "b" }),
    xa: Tensor.fromArray(gpu, h.xa, [M, r], { label: "xa" }),
    db: Tensor.fromArray(gpu, h.db, [N, r], { label: "db" }),
  };
}

function host(rng: Rng, M: number, N: number, r: number) {
  return {
    dy: rng.normalArray(M * N),
    b: rng.normalArray(N * r),
    xa: rng.normalArray(M * r),
    db: rng.normalArray(N * r),
  };
}

Deno.test("loraUpBackward: matches the float64 reference and the bits of the two matmuls (ragged shapes)", async () => {
  const gpu = await requestGpu();
  const rng = new Rng(21);
  // Ragged tiles both ways: few rows and many features, many rows and few features, a rank past one 16-wide tile.
  for (const [M, N, r] of [[5, 300, 4], [70, 40, 16], [130, 24, 20], [1, 16, 1]]) {
    const h = host(rng, M, N, r);
    const t = upload(gpu, h, M, N, r);
    const scale = 0.75;
    const fresh = loraUpBackward(t.dy, t.b, t.xa, { scale });
    const { dyb, dB } = loraUpBackward(t.dy, t.b, t.xa, { scale, dB: t.db, accumulate: true });
    const shape = `M=${M} N=${N} r=${r}`;
    close(await dyb.toFloat32(), refMatmul(h.dy, h.b, M, r, N, {}), `dY·B ${shape}`);
    close(await fresh.dB.toFloat32(), refMatmul(h.dy, h.xa, N, r, M, { transA: true, alpha: scale }), `dB ${shape}`);
    const want = refMatmul(h.dy, h.xa, N, r, M, { transA: true, alpha: scale, c: h.db });
    close(await dB.toFloat32(), want, `dB accumulated ${shape}`);
    // Each output sums the same products in the same order as matmul_f32: equal bits.
    assert.deepEqual(await dyb.toFloat32(), await matmul(t.dy, t.b).toFloat32(), `dY·B bits ${shape}`);
    assert.deepEqual(
      await fresh.dB.toFloat32(),
      await matmul(t.dy, t.xa, { transA: true, alpha: scale }).toFloat32(),
      `dB bits ${shape}`,
    );
    const again = Tensor.fromArray(gpu, h.db, [N, r]);
    matmul(t.dy, t.xa, { transA: true, alpha: scale, accumulate: true, out: again });
    assert.deepEqual(await dB.toFloat32(), await again.toFloat32(), `dB accumulated bits ${shape}`);
  }
  gpu.destroy();
});

Deno.test("loraUpBackward: rows split by a binding limit give the bits of the split matmuls", async () => {
  // M = 70 rows of N = 72 floats (288 B): a 5760-byte limit binds 16 rows at a time (256-byte alignment).
  const [M, N, r] = [70, 72, 4];
  const [small, whole] = await Promise.all([requestGpu({ maxBindingBytes: 5760 }), requestGpu()]);
  const h = host(new Rng(22), M, N, r);
  const s = upload(small, h, M, N, r);
  const w = upload(whole, h, M, N, r);
  const split = loraUpBackward(s.dy, s.b, s.xa, { scale: 2, dB: s.db, accumulate: true });
  // dY·B is row-local: the bits of the whole dispatch. dB is summed range by range, as matmul sums it.
  assert.deepEqual(await split.dyb.toFloat32(), await loraUpBackward(w.dy, w.b, w.xa).dyb.toFloat32());
  const viaMatmul = Tensor.fromArray(small, h.db, [N, r]);
  matmul(s.dy, s.xa, { transA: true, alpha: 2, accumulate: true, out: viaMatmul });
  assert.deepEqual(await split.dB.toFloat32(), await viaMatmul.toFloat32());
  const want = refMatmul(h.dy, h.xa, N, r, M, { transA: true, alpha: 2, c: h.db });
  close(await split.dB.toFloat32(), want, "split dB vs the reference");
  [small, whole].forEach((g) => g.destroy());
});

Deno.test("loraUpBackward: mismatched shapes and accumulate without dB are errors naming the tensor", async () => {
  const gpu = await requestGpu();
  const t = upload(gpu, host(new Rng(23), 3, 8, 2), 3, 8, 2);
  assert.throws(() => loraUpBackward(t.dy, t.b, t.b), /loraUpBackward: XA "b" is \[8,2\] f32, expected \[3,2\] f32/);
  assert.throws(() => loraUpBackward(t.xa, t.b, t.xa), /output gradient "xa" is \[3,2\] f32, expected \[\*,8\] f32/);
  assert.throws(() => loraUpBackward(t.dy, t.b, t.xa, { dB: t.xa }), /dB "xa" is \[3,2\] f32, expected \[8,2\] f32/);
  assert.throws(() => loraUpBackward(t.dy, t.b, t.xa, { accumulate: true }), /accumulate needs a dB tensor/);
  gpu.destroy();
});
