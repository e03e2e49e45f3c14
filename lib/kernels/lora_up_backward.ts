/**
 * The backward of a LoRA up projection `Y += s·XA·Bᵀ` on the GPU (`wgsl/lora_up_backward.wgsl`): `dY·B` and
 * `dB (+)= s·dYᵀ·XA` in one dispatch, each with the bits of its own `matmul`. Rows past one storage binding are
 * processed in ranges, `dB` summed range by range as `matmul` sums a split reduction.
 *
 * @module
 */

import { Tensor } from "../gpu/tensor.ts";
import {
  checkBindingSize,
  distinct,
  expectF32,
  f32Bits,
  grid,
  matrixTile,
  params,
  productFlops,
  rowBinding,
  rowRanges,
} from "./_kernel.ts";

/** Options of {@linkcode loraUpBackward}. */
export interface LoraUpBackwardOptions {
  /** Scale `s` of `dB` (the adapter's scale; default 1). */
  scale?: number;
  /** Destination of `dB` `[N, r]` (default: a new tensor). */
  dB?: Tensor;
  /** Add into `dB` instead of overwriting it (needs `dB`). */
  accumulate?: boolean;
  /** Label prefix of the new tensors (default `"lora"`). */
  label?: string;
}

/** What {@linkcode loraUpBackward} returns. */
export interface LoraUpGradients {
  /** `dY·B` `[M, r]` (the caller frees it): the gradient of `XA`, before the scale. */
  dyb: Tensor;
  /** `dB` `[N, r]`. */
  dB: Tensor;
}

/**
 * Both products of the backward of `Y += s·XA·Bᵀ` given `dY`, in one dispatch (one per row range past the binding
 * limit): `dYB = dY·B` and `dB = s·dYᵀ·XA` (`+ dB` when accumulating).
 *
 * @param dy Output gradient `[M, N]` f32.
 * @param b The up projection `B` `[N, r]` f32 (bound whole).
 * @param xa The forward's adapter input `XA` `[M, r]` f32.
 * @param options Scale, destination and accumulation of `dB`, labels.
 * @returns `dyb` and `dB`.
 * @throws {Error} On mismatched shapes or dtypes, `accumulate` without `dB`, or `B`/`dB` past one binding, before
 *   any dispatch.
 *
 * @example
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { loraUpBackward } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const dy = Tensor.fromArray(gpu, new Float32Array([1, 2, 3, 4]), [2, 2]); // M = 2, N = 2
 * const b = Tensor.fromArray(gpu, new Float32Array([1, 10]), [2, 1]); // r = 1
 * const xa = Tensor.fromArray(gpu, new Float32Array([1, -1]), [2, 1]);
 * const { dyb, dB } = loraUpBackward(dy, b, xa, { scale: 2 });
 * assert.deepEqual([...await dyb.toFloat32()], [21, 43]); // dY·B
 * assert.deepEqual([...await dB.toFloat32()], [-4, -4]); // 2·dYᵀ·XA
 * ```
 */
export function loraUpBackward(
  dy: Tensor,
  b: Tensor,
  xa: Tensor,
  options: LoraUpBackwardOptions = {},
): LoraUpGradients {
  const { scale = 1, accumulate = false, label = "lora" } = options;
  const where = "loraUpBackward:";
  expectF32(b, [-1, -1], `${where} B`);
  const [N, r] = b.shape;
  expectF32(dy, [-1, N], `${where} output gradient`);
  const M = dy.shape[0];
  expectF32(xa, [M, r], `${where} XA`);
  if (accumulate && !options.dB) throw new Error(`${where} accumulate needs a dB tensor`);
  const gpu = dy.gpu;
  const dB = options.dB ?? Tensor.empty(gpu, [N, r], { label: `${label} dB`, zero: false });
  expectF32(dB, [N, r], `${where} dB`);
  for (const t of [dy, b, xa]) distinct("loraUpBackward", t, dB);
  checkBindingSize(gpu, `${where} (rows of dY, XA and dYB are split)`, [["B", b.byteLength], ["dB", dB.byteLength]]);
  const dyb = Tensor.empty(gpu, [M, r], { label: `${label} dY·B`, zero: false });
  // One tile shape for both products: rows of dY·B are rows of M, rows of dB are the N features.
  const BM = matrixTile(Math.max(M, N));
  const BN = matrixTile(r);
  const colTiles = Math.ceil(r / BN);
  const ranges = rowRanges(gpu, M, [N * 4, r * 4], "loraUpBackward");
  for (const range of ranges) {
    const m = range[1] - range[0];
    const dybTiles = Math.ceil(m / BM) * colTiles;
    const dbTiles = Math.ceil(N / BM) * colTiles;
    const adds = accumulate || range[0] > 0;
    const u = params([m, N, r, adds ? 1 : 0, f32Bits(scale), dybTiles]);
    gpu.dispatch({
      kernel: "lora_up_backward",
      constants: { BM, BN },
      bindings: [
        rowBinding(dy, N * 4, range),
        b.binding,
        rowBinding(xa, r * 4, range),
        rowBinding(dyb, r * 4, range),
        dB.binding,
        u,
      ],
      workgroups: grid(gpu, dybTiles + dbTiles),
      // dY·B and dYᵀ·XA over the range's rows; bytes: dY, B, XA, dY·B and dB (read too when added into).
      bytes: 4 * (m * N + N * r + 2 * m * r + (adds ? 2 : 1) * N * r),
      flops: productFlops(m, r, N) + productFlops(N, r, m),
    });
  }
  return { dyb, dB };
}
