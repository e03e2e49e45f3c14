/**
 * The model's head: final RMSNorm, the frozen `lm_head`, and cross-entropy, in row chunks so that the logits of
 * a long batch never exist at once (a 4k-token batch of a 128k vocabulary would be 2 GiB of f32 logits).
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import { matmul } from "../kernels/matmul.ts";
import { crossEntropy } from "./ops/cross_entropy.ts";
import { rmsNormBackward, rmsNormForward } from "./ops/rms_norm.ts";

/** Largest logits chunk, in bytes (also bounded by the storage binding limit). */
const _CHUNK_BYTES = 64 * 2 ** 20;

/** What {@linkcode lossHead} returns. */
export interface LossHeadResult {
  /** One cross-entropy stats tensor per row chunk (read with `readCrossEntropy`; the caller frees them). */
  stats: Tensor[];
  /** Gradient of the final hidden state `[N, H]` (backward only), else null. */
  dh: Tensor | null;
}

/** Rows of logits per chunk for a vocabulary of `vocab`. */
function _rowsPerChunk(gpu: Gpu, vocab: number): number {
  const bytes = Math.min(_CHUNK_BYTES, gpu.limits.maxStorageBufferBindingSize);
  return Math.max(1, Math.floor(bytes / (vocab * 4)));
}

/** Rows `[r0, r0+n)` of `t` `[N, C]` as a new tensor (or `t` itself when that is all of it). */
function _rows(gpu: Gpu, t: Tensor, r0: number, n: number, label: string): Tensor {
  if (r0 === 0 && n === t.shape[0]) return t;
  const cols = t.shape[1];
  const out = Tensor.empty(gpu, [n, cols], { label });
  gpu.copy(t.buffer, r0 * cols * 4, out.buffer, 0, n * cols * 4);
  return out;
}

/**
 * Final norm, logits and cross-entropy over shifted targets; with `backward`, also the gradient of the final
 * hidden state for `gradScale · Σ loss`.
 *
 * @param gpu The device.
 * @param h Final hidden state `[N, H]` (not freed).
 * @param norm `model.norm.weight` `[H]`.
 * @param lmHead `lm_head.weight` `[V, H]`.
 * @param targets `[N]` targets (-100: ignored).
 * @param eps RMSNorm epsilon.
 * @param backward Form the gradient.
 * @param gradScale Factor of the loss sum in the gradient.
 * @returns Stats per chunk and `dh`.
 */
export function lossHead(
  gpu: Gpu,
  h: Tensor,
  norm: Tensor,
  lmHead: Tensor,
  targets: Int32Array,
  eps: number,
  backward: boolean,
  gradScale: number,
): LossHeadResult {
  const [N, H] = h.shape;
  const vocab = lmHead.shape[0];
  const { y: hn, rstd } = rmsNormForward(gpu, h, norm, eps);
  const dhn = backward ? Tensor.empty(gpu, [N, H], { label: "lm_head dh" }) : null;
  const per = _rowsPerChunk(gpu, vocab);
  const stats: Tensor[] = [];
  for (let r0 = 0; r0 < N; r0 += per) {
    const n = Math.min(per, N - r0);
    const hc = _rows(gpu, hn, r0, n, "lm_head input chunk");
    const logits = matmul(hc, lmHead, { transB: true });
    const labels = Tensor.fromArray(gpu, targets.subarray(r0, r0 + n), [n], { class: "scratch", label: "targets" });
    stats.push(crossEntropy(gpu, logits, labels, { gradScale }).stats);
    labels.destroy();
    if (dhn) {
      // crossEntropy left dLoss/dlogits in `logits`.
      const dhc = matmul(logits, lmHead);
      gpu.copy(dhc.buffer, 0, dhn.buffer, r0 * H * 4, n * H * 4);
      dhc.destroy();
    }
    logits.destroy();
    if (hc !== hn) hc.destroy();
  }
  let dh: Tensor | null = null;
  if (dhn) {
    dh = rmsNormBackward(gpu, dhn, h, norm, rstd);
    dhn.destroy();
  }
  hn.destroy();
  rstd.destroy();
  return { stats, dh };
}

/**
 * Logits of every row: `RMSNorm(h) · lm_headᵀ`.
 *
 * @param gpu The device.
 * @param h Hidden state `[N, H]` (not freed).
 * @param norm `model.norm.weight`.
 * @param lmHead `lm_head.weight` `[V, H]`.
 * @param eps RMSNorm epsilon.
 * @returns `[N, V]` logits (the caller frees them).
 */
export function headLogits(gpu: Gpu, h: Tensor, norm: Tensor, lmHead: Tensor, eps: number): Tensor {
  const { y: hn, rstd } = rmsNormForward(gpu, h, norm, eps);
  const logits = matmul(hn, lmHead, { transB: true });
  hn.destroy();
  rstd.destroy();
  return logits;
}
