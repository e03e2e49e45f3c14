/**
 * The model's head: final RMSNorm, the frozen `lm_head`, and cross-entropy, in row chunks so that the logits of
 * a long batch never exist at once (a 4k-token batch of a 128k vocabulary would be 2 GiB of f32 logits).
 *
 * An `lm_head` larger than one storage binding (e.g. Qwen2's 152k × 896 f32 on llvmpipe's 128 MiB) is held as
 * vocabulary chunks (see {@linkcode vocabChunks}); each chunk's logits are copied into their columns of the row
 * chunk's logits, and the gradient columns back out of them.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import { DTYPE_BYTES } from "../dtype.ts";
import { matmul } from "../kernels/matmul_f32.ts";
import { crossEntropy } from "../kernels/cross_entropy.ts";
import { rmsNormBackward, rmsNormForward } from "../kernels/rms_norm.ts";

/** Largest logits chunk, in bytes (also bounded by the storage binding limit). */
const _CHUNK_BYTES = 64 * 2 ** 20;

/**
 * A training loss of the final hidden state `h` `[B·T, H]` (which it must free) at the rows whose target is not
 * -100: its sum, and the gradient of `gradScale ·` that sum with respect to `h`.
 */
export type HiddenLoss = (
  h: Tensor,
  targets: Int32Array,
  gradScale: number,
) => Promise<{ lossSum: number; dh: Tensor }>;

/** The frozen head of a model: `model.norm.weight`, `lm_head` in vocabulary chunks, RMSNorm epsilon. */
export interface HeadWeights {
  /** `model.norm.weight` `[H]`. */
  norm: Tensor;
  /** `lm_head.weight` `[V, H]` as vocabulary chunks. */
  lmHead: Tensor[];
  /** RMSNorm epsilon. */
  eps: number;
}

/** What {@linkcode lossHead} returns. */
export interface LossHeadResult {
  /** One cross-entropy stats tensor per row chunk (read with `readCrossEntropy`; the caller frees them). */
  stats: Tensor[];
  /** Gradient of the final hidden state `[N, H]` (backward only), else null. */
  dh: Tensor | null;
}

/**
 * Splits `lm_head` `[V, H]` into row (vocabulary) chunks whose f32 rows would each fit one storage binding of
 * `maxBytes` (the same chunks whatever the stored type).
 *
 * @param gpu The device.
 * @param w The weight (returned as is when it fits; otherwise copied, and left to the caller).
 * @param maxBytes Largest binding.
 * @returns The chunks, in vocabulary order (`weights` class).
 */
export function vocabChunks(gpu: Gpu, w: Tensor, maxBytes: number): Tensor[] {
  if (w.size * 4 <= maxBytes) return [w];
  const [V, H] = w.shape;
  const rowBytes = H * DTYPE_BYTES[w.dtype];
  // Rows as for f32 whatever the stored type: the chunks, hence the sums over them, do not depend on it.
  const rows = Math.max(1, Math.floor(maxBytes / (H * 4)));
  const out: Tensor[] = [];
  for (let v0 = 0; v0 < V; v0 += rows) {
    const n = Math.min(rows, V - v0);
    const c = Tensor.empty(gpu, [n, H], { dtype: w.dtype, class: "weights", label: `${w.label}[${v0}:${v0 + n}]` });
    gpu.copy(w.buffer, w.byteOffset + v0 * rowBytes, c.buffer, c.byteOffset, n * rowBytes);
    out.push(c);
  }
  return out;
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
  gpu.copy(t.buffer, t.byteOffset + r0 * cols * 4, out.buffer, out.byteOffset, n * cols * 4);
  return out;
}

/** Copies columns `[v0, v0+w)` between `[n, V]` `full` and `[n, w]` `part`, one row at a time. */
function _columns(gpu: Gpu, full: Tensor, part: Tensor, v0: number, toFull: boolean): void {
  const [n, V] = full.shape;
  const w = part.shape[1];
  for (let r = 0; r < n; r++) {
    const f = full.byteOffset + (r * V + v0) * 4;
    const p = part.byteOffset + r * w * 4;
    if (toFull) gpu.copy(part.buffer, p, full.buffer, f, w * 4);
    else gpu.copy(full.buffer, f, part.buffer, p, w * 4);
  }
}

/** `[n, V]` logits of `hn` `[n, H]` against the vocabulary chunks. */
function _logits(gpu: Gpu, hn: Tensor, lmHead: Tensor[]): Tensor {
  if (lmHead.length === 1) return matmul(hn, lmHead[0], { transB: true });
  const V = lmHead.reduce((s, w) => s + w.shape[0], 0);
  const logits = Tensor.empty(gpu, [hn.shape[0], V], { label: "logits" });
  let v0 = 0;
  for (const w of lmHead) {
    const part = matmul(hn, w, { transB: true });
    _columns(gpu, logits, part, v0, true);
    part.destroy();
    v0 += w.shape[0];
  }
  return logits;
}

/** `dLogits · lm_head` `[n, H]`. */
function _gradInput(gpu: Gpu, dLogits: Tensor, lmHead: Tensor[]): Tensor {
  if (lmHead.length === 1) return matmul(dLogits, lmHead[0]);
  const out = Tensor.empty(gpu, [dLogits.shape[0], lmHead[0].shape[1]], { label: "lm_head dx" });
  let v0 = 0;
  for (const w of lmHead) {
    const part = Tensor.empty(gpu, [dLogits.shape[0], w.shape[0]], { label: "dlogits columns" });
    _columns(gpu, dLogits, part, v0, false);
    matmul(part, w, { out, accumulate: v0 > 0 });
    part.destroy();
    v0 += w.shape[0];
  }
  return out;
}

/**
 * Final norm and logits in row chunks, each handed to `rowLoss`, which computes its loss and, for the backward,
 * leaves `dLoss/dlogits` in place; with `backward`, returns the gradient of the final hidden state.
 *
 * @param gpu The device.
 * @param h Final hidden state `[N, H]` (not freed).
 * @param head The final norm and `lm_head` in vocabulary chunks.
 * @param backward Form the gradient.
 * @param rowLoss The loss of logits `[n, V]` of rows `[r0, r0+n)`.
 * @returns `dh` `[N, H]` (backward), else null.
 */
export function chunkedHeadLoss(
  gpu: Gpu,
  h: Tensor,
  head: HeadWeights,
  backward: boolean,
  rowLoss: (logits: Tensor, r0: number) => void,
): Tensor | null {
  const [N, H] = h.shape;
  const { norm, lmHead, eps } = head;
  const vocab = lmHead.reduce((s, w) => s + w.shape[0], 0);
  const { y: hn, rstd } = rmsNormForward(gpu, h, norm, eps);
  const dhn = backward ? Tensor.empty(gpu, [N, H], { label: "lm_head dh" }) : null;
  const per = _rowsPerChunk(gpu, vocab);
  for (let r0 = 0; r0 < N; r0 += per) {
    const n = Math.min(per, N - r0);
    const logits = chunkLogits(gpu, hn, lmHead, r0, n);
    rowLoss(logits, r0);
    if (dhn) {
      // rowLoss left dLoss/dlogits in `logits`.
      const dhc = _gradInput(gpu, logits, lmHead);
      gpu.copy(dhc.buffer, dhc.byteOffset, dhn.buffer, dhn.byteOffset + r0 * H * 4, n * H * 4);
      dhc.destroy();
    }
    logits.destroy();
  }
  let dh: Tensor | null = null;
  if (dhn) {
    dh = rmsNormBackward(gpu, dhn, h, norm, rstd);
    dhn.destroy();
  }
  hn.destroy();
  rstd.destroy();
  return dh;
}

/**
 * Logits `[n, V]` of rows `[r0, r0+n)` of the normed hidden state `hn`.
 *
 * @param gpu The device.
 * @param hn `RMSNorm(h)` `[N, H]`.
 * @param lmHead `lm_head.weight` as vocabulary chunks.
 * @param r0 First row.
 * @param n Rows.
 * @returns The logits (the caller frees them).
 */
export function chunkLogits(gpu: Gpu, hn: Tensor, lmHead: Tensor[], r0: number, n: number): Tensor {
  const hc = _rows(gpu, hn, r0, n, "lm_head input chunk");
  const logits = _logits(gpu, hc, lmHead);
  if (hc !== hn) hc.destroy();
  return logits;
}

/**
 * Final norm, logits and cross-entropy over shifted targets; with `backward`, also the gradient of the final
 * hidden state for `gradScale · Σ loss`.
 *
 * @param gpu The device.
 * @param h Final hidden state `[N, H]` (not freed).
 * @param norm `model.norm.weight` `[H]`.
 * @param lmHead `lm_head.weight` `[V, H]` as vocabulary chunks.
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
  lmHead: Tensor[],
  targets: Int32Array,
  eps: number,
  backward: boolean,
  gradScale: number,
): LossHeadResult {
  const stats: Tensor[] = [];
  const dh = chunkedHeadLoss(gpu, h, { norm, lmHead, eps }, backward, (logits, r0) => {
    const n = logits.shape[0];
    const labels = Tensor.fromArray(gpu, targets.subarray(r0, r0 + n), [n], { class: "scratch", label: "targets" });
    stats.push(crossEntropy(gpu, logits, labels, { gradScale }).stats);
    labels.destroy();
  });
  return { stats, dh };
}

/**
 * Logits of every row: `RMSNorm(h) · lm_headᵀ`.
 *
 * @param gpu The device.
 * @param h Hidden state `[N, H]` (not freed).
 * @param norm `model.norm.weight`.
 * @param lmHead `lm_head.weight` `[V, H]` as vocabulary chunks.
 * @param eps RMSNorm epsilon.
 * @returns `[N, V]` logits (the caller frees them).
 */
export function headLogits(gpu: Gpu, h: Tensor, norm: Tensor, lmHead: Tensor[], eps: number): Tensor {
  const { y: hn, rstd } = rmsNormForward(gpu, h, norm, eps);
  const logits = _logits(gpu, hn, lmHead);
  hn.destroy();
  rstd.destroy();
  return logits;
}
