/**
 * Global gradient-norm clipping on the GPU (`wgsl/clip_grad_norm.wgsl`), as `torch.nn.utils.clip_grad_norm_`.
 *
 * @module
 */

import { type Gpu, grid2d } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { chunkElems } from "./_kernel.ts";

const WG = 256;
const ITEMS = 8;
const PER_GROUP = WG * ITEMS;

/**
 * Computes the global L2 norm of `grads` with a GPU reduction and, if it exceeds `maxNorm`, scales every gradient
 * in place by `maxNorm / (norm + 1e-6)` (QLoRA's default `maxNorm` is 0.3).
 *
 * A NaN or infinite gradient makes the norm non-finite: the norm is returned as is and the gradients are left
 * untouched, so the caller can report it and skip the step.
 *
 * @param gpu The device.
 * @param grads f32 gradients.
 * @param maxNorm The largest norm allowed (> 0).
 * @returns The norm before clipping (NaN or Infinity when a gradient is not finite).
 * @throws {Error} Naming a gradient that is not f32, or a bad `maxNorm`.
 *
 * @example Clip to norm 1
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { clipGradNorm } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const g = Tensor.fromArray(gpu, new Float32Array([3, 4]), [2]);
 * assert.equal(await clipGradNorm(gpu, [g], 1), 5);
 * const [a, b] = await g.toFloat32();
 * assert.ok(Math.abs(a - 0.6) < 1e-6 && Math.abs(b - 0.8) < 1e-6);
 * ```
 */
export async function clipGradNorm(gpu: Gpu, grads: readonly Tensor[], maxNorm: number): Promise<number> {
  if (!(maxNorm > 0)) throw new Error(`clipGradNorm: maxNorm must be > 0 (got ${maxNorm})`);
  // Gradients past one storage binding are bound in chunks of whole workgroups.
  const chunk = chunkElems(gpu, 4, PER_GROUP, "gradients");
  const chunks: { t: Tensor; offset: number; n: number }[] = [];
  for (const t of grads) {
    if (t.dtype !== "f32") {
      throw new Error(`clipGradNorm: gradient "${t.label}" is [${t.shape}] ${t.dtype}, expected f32`);
    }
    for (let e = 0; e < t.size; e += chunk) chunks.push({ t, offset: e, n: Math.min(chunk, t.size - e) });
  }
  if (chunks.length === 0) return 0;
  const count = chunks.reduce((s, c) => s + Math.ceil(c.n / PER_GROUP), 0);
  const partials = gpu.createBuffer(count * 4, "scratch", "grad-norm partial sums");
  const result = gpu.createBuffer(8, "scratch", "grad-norm result");
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  const range = (c: (typeof chunks)[number]) => ({ buffer: c.t.buffer, offset: c.offset * 4, size: c.n * 4 });
  try {
    let first = 0;
    for (const c of chunks) {
      const groups = Math.ceil(c.n / PER_GROUP);
      gpu.dispatch({
        kernel: "clip_grad_norm",
        entryPoint: "partial",
        constants: { WG, ITEMS },
        bindings: [range(c), partials, new Uint32Array([c.n, first, 0, 0])],
        workgroups: grid2d(groups, max),
      });
      first += groups;
    }
    const u = new Uint32Array([count, 0, 0, 0]);
    new Float32Array(u.buffer).set([maxNorm], 2);
    gpu.dispatch({
      kernel: "clip_grad_norm",
      entryPoint: "total",
      constants: { WG, ITEMS },
      bindings: [partials, result, u],
      workgroups: 1,
    });
    const [sumSq, scale] = await gpu.readF32(result);
    const norm = Math.sqrt(sumSq);
    if (Number.isFinite(norm) && scale < 1) {
      for (const c of chunks) {
        gpu.dispatch({
          kernel: "clip_grad_norm",
          entryPoint: "scale",
          constants: { WG, ITEMS },
          bindings: [range(c), result, new Uint32Array([c.n, 0, 0, 0])],
          workgroups: grid2d(Math.ceil(c.n / WG), max),
        });
      }
    }
    return norm;
  } finally {
    gpu.free(partials);
    gpu.free(result);
  }
}
