/**
 * Cross-entropy over vocabulary logits with ignored labels, fused with its gradient, on the GPU
 * (`wgsl/cross_entropy.wgsl`: entry point `rows` per row, then `reduce` over the row stats).
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import { expectRows, expectSize, grid, params, rowBinding, rowRanges } from "./_kernel.ts";

/** Options for {@linkcode crossEntropy}. */
export interface CrossEntropyOptions {
  /**
   * Where to write the gradient `[M, V]`; default: over `logits` itself (no second `[M, V]` buffer). Another
   * tensor receives a copy of the logits first, and `logits` is left unchanged.
   */
  dLogits?: Tensor;
  /**
   * Factor of the gradient rows: default `1 / count` (the gradient of the mean). Pass `1 / totalTokens` to
   * weight micro-batches of a gradient-accumulation step by their token counts.
   */
  gradScale?: number;
}

/** Result of {@linkcode crossEntropy}. */
export interface CrossEntropyResult {
  /**
   * f32 `[8]` on the GPU: `[mean, sum, count, nonFiniteRows, firstNonFiniteRow, badLabelRows, firstBadLabelRow, 0]`
   * (`count`: labels other than -100; `mean` 0 when `count` is 0; `first*` -1 when none). Read it with
   * {@linkcode readCrossEntropy}.
   */
  stats: Tensor;
  /** `(softmax(logits) - onehot(label)) * gradScale` per row; zero rows for ignored labels. */
  dLogits: Tensor;
}

/** Loss totals read by {@linkcode readCrossEntropy}. */
export interface CrossEntropyStats {
  /** Mean loss over the counted labels (0 when there are none). */
  loss: number;
  /** Summed loss. */
  sum: number;
  /** Labels other than -100. */
  count: number;
}

/** Label value left out of the loss, as in PyTorch. */
const IGNORED = -100;

/**
 * Mean cross-entropy of `logits` `[M, V]` against integer `labels` `[M]` (-100: ignored), and its gradient, in one
 * pass per row over the vocabulary: the kernel finds the row's max and logsumexp, then overwrites the row with
 * `(softmax - onehot) * gradScale`. Logits larger than one storage binding are processed range by range.
 * Nothing is read back: see {@linkcode readCrossEntropy}, which also reports NaN/Inf logits and bad labels.
 *
 * @param gpu The device.
 * @param logits f32 `[M, V]` (overwritten by the gradient unless `options.dLogits` is another tensor).
 * @param labels i32 `[M]`: class per row, or -100.
 * @param options Gradient destination and scale.
 * @returns The stats tensor and the gradient.
 *
 * @example
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { crossEntropy, readCrossEntropy } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const logits = Tensor.fromArray(gpu, new Float32Array([0, 0, 5, 1]), [2, 2]);
 * const labels = Tensor.fromArray(gpu, new Int32Array([1, -100]), [2]);
 * const { stats, dLogits } = crossEntropy(gpu, logits, labels);
 * const { loss, count } = await readCrossEntropy(stats);
 * assert.equal(count, 1);
 * assert.ok(Math.abs(loss - Math.log(2)) < 1e-6);
 * assert.deepEqual([...await dLogits.toFloat32()], [0.5, -0.5, 0, 0]);
 * ```
 */
export function crossEntropy(
  gpu: Gpu,
  logits: Tensor,
  labels: Tensor,
  options: CrossEntropyOptions = {},
): CrossEntropyResult {
  const rows = labels.size;
  if (labels.dtype !== "i32") {
    throw new Error(`Cross-entropy labels "${labels.label}" is [${labels.shape}] ${labels.dtype}, expected i32`);
  }
  const [, vocab] = expectRows(logits, "Cross-entropy logits", logits.size / Math.max(rows, 1));
  if (logits.shape.at(-1) !== vocab) {
    throw new Error(
      `Cross-entropy logits "${logits.label}" is [${logits.shape}] ${logits.dtype}, expected [${rows}, V] for ${rows} labels`,
    );
  }
  let grad = logits;
  if (options.dLogits && options.dLogits !== logits) {
    grad = options.dLogits;
    expectSize(grad, "Cross-entropy dLogits", logits.size);
    gpu.copy(logits.buffer, logits.byteOffset, grad.buffer, grad.byteOffset, logits.byteLength);
  }
  const rowStats = gpu.createBuffer(rows * 8, "scratch", "cross-entropy row stats");
  const stats = Tensor.empty(gpu, [8], { class: "scratch", label: "cross-entropy stats" });
  const useCount = options.gradScale === undefined ? 1 : 0;
  const rowBytes = vocab * 4;
  const ranges = rowRanges(gpu, rows, [rowBytes], "Cross-entropy logits");
  for (const [start, end] of ranges) {
    const count = end - start;
    gpu.dispatch({
      kernel: "cross_entropy",
      entryPoint: "rows",
      bindings: [
        rowBinding(grad, rowBytes, [start, end]),
        labels.binding,
        rowStats,
        params([count, vocab, start, rows, useCount], [options.gradScale ?? 0]),
      ],
      workgroups: grid(gpu, count),
      // Logits read and gradient written (in place; the kernel's second pass over the row is not counted again),
      // the labels (all of them when counting), row stats.
      bytes: 4 * (2 * count * vocab + (useCount ? rows : count) + 2 * count),
    });
  }
  gpu.dispatch({
    kernel: "cross_entropy",
    entryPoint: "reduce",
    bindings: [rowStats, labels.binding, stats.binding, params([rows])],
    workgroups: 1,
    bytes: 12 * rows + stats.byteLength,
  });
  gpu.free(rowStats);
  return { stats, dLogits: grad };
}

/**
 * Reads the stats of {@linkcode crossEntropy} (waits for the GPU) and checks them.
 *
 * @param stats The `stats` tensor.
 * @returns Mean, sum and count.
 * @throws {Error} If any row of logits held NaN/Inf, or a label was outside `[0, V)` and not -100; the message
 *   gives how many rows and the first.
 *
 * @example
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { crossEntropy, readCrossEntropy } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const logits = Tensor.fromArray(gpu, new Float32Array([0, NaN]), [1, 2]);
 * const { stats } = crossEntropy(gpu, logits, Tensor.fromArray(gpu, new Int32Array([0]), [1]));
 * await assert.rejects(readCrossEntropy(stats), /1 row of logits holds NaN\/Inf \(first: row 0\)/);
 * ```
 */
export async function readCrossEntropy(stats: Tensor): Promise<CrossEntropyStats> {
  return checkCrossEntropy(await stats.toFloat32());
}

/**
 * Checks the values of a {@linkcode crossEntropy} `stats` tensor read to the host (e.g. copied with other results
 * into one buffer, to read them all in one wait), as {@linkcode readCrossEntropy} does.
 *
 * @param values The stats' 8 f32.
 * @returns Mean, sum and count.
 * @throws {Error} As {@linkcode readCrossEntropy}.
 *
 * @example
 * ```ts
 * import { checkCrossEntropy } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * assert.deepEqual(checkCrossEntropy(new Float32Array([2, 4, 2, 0, -1, 0, -1, 0])), { loss: 2, sum: 4, count: 2 });
 * assert.throws(() => checkCrossEntropy(new Float32Array([0, 0, 1, 1, 3, 0, -1, 0])), /first: row 3/);
 * ```
 */
export function checkCrossEntropy(values: Float32Array): CrossEntropyStats {
  const [loss, sum, count, nonFinite, firstNonFinite, badLabels, firstBadLabel] = values;
  const rows = (n: number) => n === 1 ? "1 row" : `${n} rows`;
  if (nonFinite > 0) {
    throw new Error(
      `Cross-entropy: ${rows(nonFinite)} of logits ${nonFinite === 1 ? "holds" : "hold"} NaN/Inf ` +
        `(first: row ${firstNonFinite})`,
    );
  }
  if (badLabels > 0) {
    throw new Error(
      `Cross-entropy: ${rows(badLabels)} with a label outside [0, vocab) other than ${IGNORED} ` +
        `(first: row ${firstBadLabel})`,
    );
  }
  if (!Number.isFinite(sum)) throw new Error(`Cross-entropy: the loss sum is ${sum}`);
  return { loss, sum, count };
}
