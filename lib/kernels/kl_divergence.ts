/**
 * The knowledge-distillation loss of LLM-QAT on the GPU (`wgsl/kl_divergence.wgsl`): `KL(teacher ‖ student)` of
 * the next-token distributions over the full vocabulary, per row, fused with its gradient over the student logits.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import { expectRows, expectSize, grid, params, rowBinding, rowRanges } from "./_kernel.ts";

/** Options of {@linkcode klDivergence}. */
export interface KlDivergenceOptions {
  /** Factor of the gradient rows (default 1; 0 leaves zeros: an evaluation). */
  gradScale?: number;
  /** Per-row KL destination `[M]` f32 (default a new tensor). */
  rowKl?: Tensor;
  /** Index of the first row of `student` within `mask` and `rowKl` (default 0), for chunked logits. */
  rowBase?: number;
}

/**
 * Per-row `KL(softmax(teacher) ‖ softmax(student))` of logits `[M, V]`, written to `rowKl`, and over `student` its
 * gradient `(softmax(student) − softmax(teacher)) · gradScale`. Rows whose `mask` is 0 get 0 for both. Logits
 * larger than one storage binding are processed range by range.
 *
 * @param gpu The device.
 * @param student f32 `[M, V]` (overwritten by the gradient).
 * @param teacher f32 `[M, V]`.
 * @param mask i32 with a value per row of the whole batch (0: left out).
 * @param options Gradient scale, destination, first row.
 * @returns The per-row KL (`options.rowKl` or a new `[mask.size]` tensor).
 * @throws {Error} On mismatched shapes or dtypes, naming the tensor.
 *
 * @example Equal logits: zero loss, zero gradient
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { klDivergence } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const s = Tensor.fromArray(gpu, new Float32Array([1, 2, 3]), [1, 3]);
 * const t = Tensor.fromArray(gpu, new Float32Array([1, 2, 3]), [1, 3]);
 * const kl = klDivergence(gpu, s, t, Tensor.fromArray(gpu, new Int32Array([1]), [1]));
 * assert.ok(Math.abs((await kl.toFloat32())[0]) < 1e-6);
 * assert.ok((await s.toFloat32()).every((g) => Math.abs(g) < 1e-6));
 * ```
 */
export function klDivergence(
  gpu: Gpu,
  student: Tensor,
  teacher: Tensor,
  mask: Tensor,
  options: KlDivergenceOptions = {},
): Tensor {
  const vocab = student.shape.at(-1)!;
  const [rows] = expectRows(student, "KL student logits", vocab);
  expectSize(teacher, "KL teacher logits", student.size);
  const rowBase = options.rowBase ?? 0;
  if (mask.dtype !== "i32" || mask.size < rowBase + rows) {
    throw new Error(
      `KL mask "${mask.label}" is [${mask.shape}] ${mask.dtype}, expected i32 covering rows ` +
        `[${rowBase}, ${rowBase + rows})`,
    );
  }
  const rowKl = options.rowKl ?? Tensor.empty(gpu, [mask.size], { label: "kl per row" });
  expectSize(rowKl, "KL per-row output", mask.size);
  const rowBytes = vocab * 4;
  for (const [r0, r1] of rowRanges(gpu, rows, [rowBytes], "KL logits")) {
    gpu.dispatch({
      kernel: "kl_divergence",
      bindings: [
        rowBinding(student, rowBytes, [r0, r1]),
        rowBinding(teacher, rowBytes, [r0, r1]),
        mask.binding,
        rowKl.binding,
        params([r1 - r0, vocab, rowBase + r0], [options.gradScale ?? 1]),
      ],
      workgroups: grid(gpu, r1 - r0),
      // Student rows read and overwritten by the gradient, teacher rows read; the rows' mask and KL.
      bytes: 4 * (r1 - r0) * (3 * vocab + 2),
    });
  }
  return rowKl;
}
