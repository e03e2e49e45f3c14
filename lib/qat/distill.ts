/**
 * LLM-QAT's loss: knowledge distillation from the frozen full-precision teacher, `KL(teacher ‖ student)` of the
 * next-token distributions over the full vocabulary at every counted position (targets other than -100), no
 * cross-entropy on the text. The logits are formed in row chunks (`chunkedHeadLoss`), the teacher's chunk next to
 * the student's, so neither model's `[B·T, V]` logits exist at once.
 *
 * @module
 */

import { Tensor } from "../gpu/tensor.ts";
import { klDivergence } from "../kernels/kl_divergence.ts";
import { rmsNormForward } from "../kernels/rms_norm.ts";
import type { Batch } from "../model/batch.ts";
import { chunkedHeadLoss, chunkLogits, type HiddenLoss } from "../model/lm_head.ts";
import { type LlamaModel, NonFiniteLossError } from "../model/llama.ts";

/**
 * Summed KL of the student's final hidden state `h` against the teacher's on the same batch, and with `backward`
 * the gradient of `gradScale ·` that sum with respect to `h`. Frees `h`.
 *
 * @param student The model whose hidden state `h` is (its head forms the student logits).
 * @param teacher The frozen teacher.
 * @param batch The batch `h` was computed on.
 * @param h The student's final hidden state `[B·T, H]` (freed).
 * @param targets `[B·T]`: rows other than -100 are counted.
 * @param gradScale Factor of the gradient.
 * @param backward Form `dh`.
 * @returns The KL sum over the counted rows, and `dh` (or null).
 * @throws {NonFiniteLossError} If a row's KL is NaN or infinite, naming the row.
 */
export async function distillation(
  student: LlamaModel,
  teacher: LlamaModel,
  batch: Batch,
  h: Tensor,
  targets: Int32Array,
  gradScale: number,
  backward: boolean,
): Promise<{ lossSum: number; dh: Tensor | null }> {
  const gpu = student.gpu;
  const hT = teacher.hiddenStates(batch);
  const th = teacher.head;
  const { y: tn, rstd } = rmsNormForward(gpu, hT, th.norm, th.eps);
  _free(hT, rstd);
  const rows = targets.length;
  const mask = Tensor.fromArray(gpu, Int32Array.from(targets, (t) => t === -100 ? 0 : 1), [rows], {
    class: "scratch",
    label: "kd mask",
  });
  const rowKl = Tensor.empty(gpu, [rows], { class: "scratch", label: "kd per row" });
  let dh: Tensor | null;
  try {
    dh = chunkedHeadLoss(gpu, h, student.head, backward, (logits, r0) => {
      const t = chunkLogits(gpu, tn, th.lmHead, r0, logits.shape[0]);
      klDivergence(gpu, logits, t, mask, { gradScale: backward ? gradScale : 0, rowKl, rowBase: r0 });
      t.destroy();
    });
  } finally {
    _free(h, tn, mask);
  }
  const kl = await rowKl.toFloat32();
  rowKl.destroy();
  let sum = 0;
  for (const [i, v] of kl.entries()) {
    if (!Number.isFinite(v)) {
      dh?.destroy();
      throw new NonFiniteLossError(`Distillation: the KL of row ${i} is ${v}`);
    }
    sum += v;
  }
  return { lossSum: sum, dh };
}

/**
 * The distillation loss of one batch as `LlamaModel.forwardBackward` takes it (`options.loss`).
 *
 * @param student The model being trained.
 * @param teacher The frozen teacher.
 * @param batch The batch given to `forwardBackward`.
 * @returns The loss.
 *
 * @example One distillation step of a 4-bit student against its own full-precision weights
 * ```ts
 * import { LlamaModel, requestGpu } from "@qlora/webgpu";
 * import { distillationLoss } from "@qlora/webgpu/qat";
 * import { parseQatBits } from "@qlora/webgpu/qlinear";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeTinyLlama(dir, { layers: 1 });
 * const gpu = await requestGpu();
 * const student = await LlamaModel.load(gpu, dir, { lora: null, qat: { bits: parseQatBits("w4a8kv4"), train: true } });
 * const teacher = await LlamaModel.load(gpu, dir, { lora: null, qat: { bits: parseQatBits("w16a16kv16") } });
 * const batch = { batchSize: 1, seqLen: 4, inputIds: new Int32Array([1, 5, 9, 13]), labels: new Int32Array([1, 5, 9, 13]) };
 * const { lossSum, tokens } = await student.forwardBackward(batch, { loss: distillationLoss(student, teacher, batch) });
 * assert.equal(tokens, 3);
 * assert.ok(lossSum > 0);
 * student.destroy();
 * teacher.destroy();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function distillationLoss(student: LlamaModel, teacher: LlamaModel, batch: Batch): HiddenLoss {
  return async (h, targets, gradScale) => {
    const { lossSum, dh } = await distillation(student, teacher, batch, h, targets, gradScale, true);
    return { lossSum, dh: dh! };
  };
}

function _free(...ts: Tensor[]): void {
  for (const t of ts) t.destroy();
}
