// The dense f32 matmul roofline: GFLOP/s of `matmul` on a square, tile-aligned problem, grown until one call
// takes long enough to time (≥ 20 ms) or reaches 4096³.

import { type Gpu, matmul, Rng, Tensor } from "../mod.ts";
import { timeGpu } from "./_roofline.ts";

/** GFLOP/s of the dense f32 matmul `C = A·B` on the largest square size tried. */
export async function denseMatmulGflops(gpu: Gpu): Promise<number> {
  for (let n = 256;; n *= 2) {
    const rng = new Rng(1);
    const a = Tensor.fromArray(gpu, rng.normalArray(n * n), [n, n]);
    const b = Tensor.fromArray(gpu, rng.normalArray(n * n), [n, n]);
    const t = (await timeGpu(gpu, () => matmul(a, b).destroy(), 3)).seconds;
    a.destroy();
    b.destroy();
    if (t >= 0.02 || n >= 4096) return (2 * n ** 3) / t / 1e9;
  }
}
