/**
 * A batch of token sequences for the model, and the host-side preparation of its targets.
 *
 * @module
 */

/** Label value that is left out of the loss (as in PyTorch/Hugging Face). */
export const IGNORE_INDEX: number = -100;

/**
 * A right-padded batch of `batchSize` sequences of `seqLen` tokens, row-major.
 *
 * `labels` follow the Hugging Face causal-LM convention: they are aligned with `inputIds` (usually a copy with
 * prompt and padding positions set to -100) and the model shifts them, so position `t` predicts `labels[t+1]`.
 */
export interface Batch {
  /** Sequences in the batch. */
  batchSize: number;
  /** Tokens per (padded) sequence. */
  seqLen: number;
  /** `[batchSize * seqLen]` token ids; padding positions may hold any valid id. */
  inputIds: Int32Array;
  /** `[batchSize * seqLen]` labels (-100: ignored); needed for the loss. */
  labels?: Int32Array;
  /** Real tokens per sequence (right padding after them); default: all `seqLen`. */
  lengths?: readonly number[];
  /** `[batchSize * seqLen]` Hugging Face attention mask (1 real, 0 padding), an alternative to `lengths`. */
  attentionMask?: Uint8Array | Int32Array;
}

/** What {@linkcode prepareTargets} computes. */
export interface PreparedTargets {
  /** `[batchSize * seqLen]` shifted targets: `labels[t+1]`, or -100 past the sequence's end. */
  targets: Int32Array;
  /** Positions that count in the loss. */
  tokens: number;
  /** Real tokens per sequence. */
  lengths: number[];
}

/**
 * Checks a batch and returns its per-sequence lengths.
 *
 * @param batch The batch.
 * @param vocabSize Token ids must be below this.
 * @returns Real tokens per sequence.
 * @throws {Error} For inconsistent sizes, ids out of range, or a mask that is not right padding.
 *
 * @example
 * ```ts
 * import { batchLengths } from "@qlora/webgpu/model";
 * import assert from "node:assert/strict";
 * const batch = { batchSize: 2, seqLen: 3, inputIds: new Int32Array([1, 2, 3, 4, 5, 0]),
 *   attentionMask: new Uint8Array([1, 1, 1, 1, 1, 0]) };
 * assert.deepEqual(batchLengths(batch, 8), [3, 2]);
 * ```
 */
export function batchLengths(batch: Batch, vocabSize: number): number[] {
  const { batchSize: b, seqLen: t } = batch;
  if (!Number.isInteger(b) || b <= 0 || !Number.isInteger(t) || t <= 0) {
    throw new Error(`Batch: batchSize ${b} and seqLen ${t} must be positive integers`);
  }
  const n = b * t;
  if (batch.inputIds.length !== n) {
    throw new Error(`Batch: inputIds has ${batch.inputIds.length} ids, expected ${b}×${t}`);
  }
  for (let i = 0; i < n; i++) {
    const id = batch.inputIds[i];
    if (!(id >= 0 && id < vocabSize)) {
      throw new Error(`Batch: inputIds[${i}] = ${id} is outside the vocabulary [0, ${vocabSize})`);
    }
  }
  let lengths: number[];
  if (batch.lengths) {
    lengths = [...batch.lengths];
    if (lengths.length !== b) throw new Error(`Batch: ${lengths.length} lengths for ${b} sequences`);
  } else if (batch.attentionMask) {
    const m = batch.attentionMask;
    if (m.length !== n) throw new Error(`Batch: attentionMask has ${m.length} entries, expected ${b}×${t}`);
    lengths = [];
    for (let s = 0; s < b; s++) {
      let len = 0;
      while (len < t && m[s * t + len] !== 0) len++;
      for (let j = len; j < t; j++) {
        if (m[s * t + j] !== 0) {
          throw new Error(`Batch: attentionMask row ${s} is not right-padded (1 at position ${j} after a 0)`);
        }
      }
      lengths.push(len);
    }
  } else {
    lengths = new Array(b).fill(t);
  }
  for (const [s, len] of lengths.entries()) {
    if (!Number.isInteger(len) || len < 1 || len > t) throw new Error(`Batch: lengths[${s}] = ${len} not in [1, ${t}]`);
  }
  return lengths;
}

/**
 * Shifts the labels for next-token prediction and masks padding: `targets[s,t] = labels[s,t+1]` when `t+1` is
 * inside sequence `s`, else -100.
 *
 * @param batch The batch (with `labels`).
 * @param vocabSize Labels must be below this (or -100).
 * @returns Targets, the count of positions in the loss, and the lengths.
 * @throws {Error} For a batch without labels or with labels out of range.
 *
 * @example
 * ```ts
 * import { prepareTargets } from "@qlora/webgpu/model";
 * import assert from "node:assert/strict";
 * const ids = new Int32Array([5, 6, 7, 0]);
 * const p = prepareTargets({ batchSize: 1, seqLen: 4, inputIds: ids, labels: ids, lengths: [3] }, 8);
 * assert.deepEqual([...p.targets], [6, 7, -100, -100]);
 * assert.equal(p.tokens, 2);
 * ```
 */
export function prepareTargets(batch: Batch, vocabSize: number): PreparedTargets {
  const lengths = batchLengths(batch, vocabSize);
  const labels = batch.labels;
  const { batchSize: b, seqLen: t } = batch;
  if (!labels) throw new Error("Batch: labels are needed for the loss");
  if (labels.length !== b * t) throw new Error(`Batch: labels has ${labels.length} entries, expected ${b}×${t}`);
  const targets = new Int32Array(b * t).fill(IGNORE_INDEX);
  let tokens = 0;
  for (let s = 0; s < b; s++) {
    for (let j = 0; j + 1 < lengths[s]; j++) {
      const y = labels[s * t + j + 1];
      if (y === IGNORE_INDEX) continue;
      if (!(y >= 0 && y < vocabSize)) {
        throw new Error(`Batch: labels[${s * t + j + 1}] = ${y} is neither -100 nor in [0, ${vocabSize})`);
      }
      targets[s * t + j] = y;
      tokens++;
    }
  }
  return { targets, tokens, lengths };
}
