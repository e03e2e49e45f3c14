/**
 * Global gradient-norm clipping on the GPU (`wgsl/clip_grad_norm.wgsl`), as `torch.nn.utils.clip_grad_norm_`:
 * {@linkcode clipGradNorm} reads the norm and scales in place; {@linkcode gradNorm} only records the norm and the
 * clip scale on the GPU, for the optimizer to apply without a host wait (`lib/optim/adamw.ts`).
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
  const chunk = gradNormChunk(gpu);
  const chunks: GPUBufferBinding[] = [];
  for (const t of grads) {
    if (t.dtype !== "f32") {
      throw new Error(`clipGradNorm: gradient "${t.label}" is [${t.shape}] ${t.dtype}, expected f32`);
    }
    for (let e = 0; e < t.size; e += chunk) {
      chunks.push({ buffer: t.buffer, offset: t.byteOffset + e * 4, size: Math.min(chunk, t.size - e) * 4 });
    }
  }
  if (chunks.length === 0) return 0;
  const result = gpu.createBuffer(gradNormBytes(chunks), "scratch", "grad-norm result");
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  try {
    gradNorm(gpu, chunks, maxNorm, result);
    const [sumSq, scale] = await gpu.readF32(result, 0, 2);
    const norm = Math.sqrt(sumSq);
    if (Number.isFinite(norm) && scale < 1) {
      for (const c of chunks) {
        gpu.dispatch({
          kernel: "clip_grad_norm",
          entryPoint: "scale",
          constants: { WG, ITEMS },
          bindings: [c, { buffer: result, offset: 0, size: 8 }, new Uint32Array([c.size! / 4, 0, 0, 0])],
          workgroups: grid2d(Math.ceil(c.size! / 4 / WG), max),
          bytes: 2 * c.size! + 8, // the range read and written, the result read
        });
      }
    }
    return norm;
  } finally {
    gpu.free(result);
  }
}

/**
 * Elements per chunk of {@linkcode gradNorm}: the most that fit one storage binding, in whole workgroups of its
 * reduction (so a gradient split in chunks sums exactly as whole).
 *
 * @param gpu The device.
 * @returns A multiple of 2048.
 *
 * @example
 * ```ts
 * import { requestGpu } from "@qlora/webgpu";
 * import { gradNormChunk } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * assert.equal(gradNormChunk(await requestGpu({ maxBindingBytes: 65536 })), 16384);
 * ```
 */
export function gradNormChunk(gpu: Gpu): number {
  return chunkElems(gpu, 4, PER_GROUP, "gradients");
}

/**
 * Bytes of the buffer {@linkcode gradNorm} works in, for these ranges: the result (8 bytes), then from byte 256 one
 * partial sum per workgroup.
 *
 * @param chunks The ranges {@linkcode gradNorm} will get.
 * @returns Bytes.
 *
 * @example
 * ```ts
 * import { gradNormBytes } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * assert.equal(gradNormBytes([{ size: 4 * 3000 }]), 256 + 4 * 2);
 * ```
 */
export function gradNormBytes(chunks: readonly { size?: number }[]): number {
  return PARTIALS_AT + 4 * Math.max(1, chunks.reduce((s, c) => s + Math.ceil(c.size! / 4 / PER_GROUP), 0));
}

/** Byte offset of the partial sums in {@linkcode gradNorm}'s buffer (a binding offset alignment). */
const PARTIALS_AT = 256;

/**
 * Records the global L2 norm of gradient ranges on the GPU, without reading it: `out` gets (sum of squares, clip
 * scale `min(1, maxNorm / (norm + 1e-6))`, or 1 when the norm is not finite) in its first 8 bytes, what the AdamW
 * kernels read to clip on the way in. One dispatch per range, then one for the total; each workgroup sums 2048
 * elements of one range, so the norm is the same however the ranges are recorded.
 *
 * @param gpu The device.
 * @param chunks f32 ranges, each at most {@linkcode gradNormChunk} elements.
 * @param maxNorm The largest norm allowed (> 0; Infinity: never clip).
 * @param out At least {@linkcode gradNormBytes} bytes: the result, then the partial sums (overwritten).
 * @throws {Error} For a bad `maxNorm`.
 *
 * @example The sum of squares of two gradients, clip scale 1 under the limit
 * ```ts
 * import { requestGpu } from "@qlora/webgpu";
 * import { gradNorm, gradNormBytes } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const [g, h] = [gpu.createBuffer(8, "scratch", "g"), gpu.createBuffer(8, "scratch", "h")];
 * gpu.write(g, new Float32Array([3, 4]));
 * gpu.write(h, new Float32Array([1, 2]));
 * const chunks = [{ buffer: g, offset: 0, size: 8 }, { buffer: h, offset: 0, size: 8 }];
 * const out = gpu.createBuffer(gradNormBytes(chunks), "scratch", "norm");
 * gradNorm(gpu, chunks, 100, out);
 * assert.deepEqual([...await gpu.readF32(out, 0, 2)], [30, 1]);
 * ```
 */
export function gradNorm(gpu: Gpu, chunks: readonly GPUBufferBinding[], maxNorm: number, out: GPUBuffer): void {
  if (!(maxNorm > 0)) throw new Error(`gradNorm: maxNorm must be > 0 (got ${maxNorm})`);
  const bytes = gradNormBytes(chunks);
  if (out.size < bytes) throw new Error(`gradNorm: buffer "${out.label}" has ${out.size} bytes, needs ${bytes}`);
  const partials = { buffer: out, offset: PARTIALS_AT, size: bytes - PARTIALS_AT };
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  let first = 0;
  for (const c of chunks) {
    const groups = Math.ceil(c.size! / 4 / PER_GROUP);
    gpu.dispatch({
      kernel: "clip_grad_norm",
      entryPoint: "partial",
      constants: { WG, ITEMS },
      bindings: [c, partials, new Uint32Array([c.size! / 4, first, 0, 0])],
      workgroups: grid2d(groups, max),
      bytes: c.size! + 4 * groups, // the range read, one partial sum per workgroup written
    });
    first += groups;
  }
  const u = new Uint32Array([first, 0, 0, 0]);
  new Float32Array(u.buffer).set([maxNorm], 2);
  gpu.dispatch({
    kernel: "clip_grad_norm",
    entryPoint: "total",
    constants: { WG, ITEMS },
    bindings: [partials, { buffer: out, offset: 0, size: 8 }, u],
    workgroups: 1,
    bytes: 4 * first + 8,
  });
}
