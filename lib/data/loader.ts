/**
 * Batches for training: an epoch order (file order, a seeded shuffle, or length-grouped as in transformers'
 * `group_by_length`), right-padded micro-batches, and optimizer steps of `gradAccum` micro-batches, with a data
 * position that can be saved and restored for an exact resume.
 *
 * @module
 */

import { deriveSeed, Rng } from "../random.ts";
import { type Batch, IGNORE_INDEX } from "../model/batch.ts";
import type { Example } from "./examples.ts";

/** A right-padded micro-batch in the model's {@linkcode Batch} layout (`[batchSize, seqLen]` row-major). */
export interface MicroBatch extends Batch {
  /** `[batchSize * seqLen]` aligned labels (-100: not trained on; padding is -100); the model shifts them. */
  labels: Int32Array;
  /** Real tokens per sequence (padding after them holds `padId`). */
  lengths: number[];
  /** Positions in the loss (sum of the examples' targets). */
  tokens: number;
}

/** One optimizer step's data. */
export interface StepData {
  /** Its micro-batches (`gradAccum` of them, fewer at the end of an epoch). */
  batches: MicroBatch[];
  /** Positions in the loss over all micro-batches: the step's loss is the sum of token losses divided by this. */
  tokens: number;
  /** Epoch the step belongs to (0-based). */
  epoch: number;
}

/** Where the loader is; with the same examples and options it fully determines what comes next. */
export interface DataPosition {
  /** Current epoch, 0-based. */
  epoch: number;
  /** Examples of this epoch's order already handed out. */
  index: number;
  /** The seed the epoch orders derive from (epoch `e` is shuffled by a generator seeded from `seed` and `e`). */
  seed: number;
}

/** Options of {@linkcode DataLoader}. */
export interface DataLoaderOptions {
  /** Sequences per micro-batch. */
  batchSize: number;
  /** Micro-batches per optimizer step. */
  gradAccum: number;
  /** Shuffle every epoch (false: file order, no grouping). Default true. */
  shuffle?: boolean;
  /** Group by length when shuffling (transformers' `group_by_length`). Default true. */
  groupByLength?: boolean;
  /** Seed of the epoch orders. Default 42. */
  seed?: number;
  /** Id written into padding positions. Default 0. */
  padId?: number;
}

/**
 * Hands out optimizer steps of micro-batches over epochs. Steps never span two epochs: an epoch of `N` examples
 * has `ceil(N / batchSize)` micro-batches and `ceil(that / gradAccum)` steps.
 *
 * @example File order, batch 2, two micro-batches per step
 * ```ts
 * import { DataLoader } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * const ex = (n: number) => ({ inputIds: new Int32Array(n).fill(5), labels: new Int32Array(n).fill(5), targets: n - 1, line: n });
 * const loader = new DataLoader([ex(2), ex(3), ex(4)], { batchSize: 2, gradAccum: 2, shuffle: false });
 * const step = loader.nextStep();
 * assert.deepEqual(step.batches.map((b) => [b.batchSize, b.seqLen]), [[2, 3], [1, 4]]);
 * assert.equal(step.tokens, 1 + 2 + 3);
 * assert.deepEqual(loader.position, { epoch: 1, index: 0, seed: 42 });
 * ```
 */
export class DataLoader {
  /** Optimizer steps per epoch. */
  readonly stepsPerEpoch: number;
  #examples: readonly Example[];
  #opts: Required<DataLoaderOptions>;
  #epoch = 0;
  #index = 0;
  #order: number[];

  /**
   * Prepares the first epoch's order.
   *
   * @param examples The tokenized examples (non-empty).
   * @param options Batch size, accumulation, order and seed.
   * @throws {Error} For no examples or non-positive sizes.
   */
  constructor(examples: readonly Example[], options: DataLoaderOptions) {
    this.#opts = { shuffle: true, groupByLength: true, seed: 42, padId: 0, ...options };
    const { batchSize, gradAccum } = this.#opts;
    if (examples.length === 0) throw new Error("DataLoader: no examples");
    for (const [k, v] of Object.entries({ batchSize, gradAccum })) {
      if (!Number.isInteger(v) || v < 1) throw new Error(`DataLoader: ${k} = ${v}, expected a positive integer`);
    }
    this.#examples = examples;
    this.stepsPerEpoch = Math.ceil(Math.ceil(examples.length / batchSize) / gradAccum);
    this.#order = this.#epochOrder(0);
  }

  /** The position to save in a checkpoint. */
  get position(): DataPosition {
    return { epoch: this.#epoch, index: this.#index, seed: this.#opts.seed };
  }

  /**
   * Continues from a saved position.
   *
   * @param position A position from {@linkcode DataLoader.position}.
   * @throws {Error} If it was saved with another seed or does not fit these examples.
   */
  restore(position: DataPosition): void {
    const { epoch, index, seed } = position;
    if (seed !== this.#opts.seed) throw new Error(`Data position was saved with seed ${seed}, not ${this.#opts.seed}`);
    if (!Number.isInteger(epoch) || epoch < 0 || !Number.isInteger(index) || index < 0) {
      throw new Error(`Invalid data position: epoch ${epoch}, index ${index}`);
    }
    if (index > this.#examples.length) {
      throw new Error(`Data position index ${index} is past the ${this.#examples.length} examples of the data`);
    }
    this.#epoch = epoch;
    this.#index = index;
    this.#order = this.#epochOrder(epoch);
  }

  /**
   * The next optimizer step's micro-batches; moves to the next epoch after its last step.
   *
   * @returns The step's batches and token count.
   */
  nextStep(): StepData {
    const { batchSize, gradAccum, padId } = this.#opts;
    const epoch = this.#epoch;
    const batches: MicroBatch[] = [];
    let tokens = 0;
    while (batches.length < gradAccum && this.#index < this.#order.length) {
      const picked = this.#order.slice(this.#index, this.#index + batchSize).map((i) => this.#examples[i]);
      this.#index += picked.length;
      const batch = _pad(picked, padId);
      batches.push(batch);
      tokens += batch.tokens;
    }
    if (this.#index >= this.#order.length) {
      this.#epoch++;
      this.#index = 0;
      this.#order = this.#epochOrder(this.#epoch);
    }
    return { batches, tokens, epoch };
  }

  #epochOrder(epoch: number): number[] {
    const { shuffle, groupByLength, seed, batchSize, gradAccum } = this.#opts;
    const n = this.#examples.length;
    if (!shuffle) return Array.from({ length: n }, (_, i) => i);
    const rng = new Rng(deriveSeed(seed, epoch));
    if (!groupByLength) return rng.shuffle(Array.from({ length: n }, (_, i) => i));
    // transformers groups with the batch size of a whole optimizer step.
    return lengthGroupedOrder(this.#examples.map((e) => e.inputIds.length), batchSize * gradAccum, rng);
  }
}

/**
 * An epoch order grouped by length, as transformers' `get_length_grouped_indices`: a random permutation cut into
 * megabatches of `min(floor(n / (4·batchSize)), 50)·batchSize` (at least `batchSize`) indices, each sorted by
 * decreasing length (stably), with the longest example moved to the very front so an out-of-memory shows at once.
 *
 * @param lengths Length of each example.
 * @param batchSize Examples per optimizer step (micro-batch size × accumulation).
 * @param rng The generator of the permutation.
 * @returns A permutation of `0..lengths.length-1`.
 *
 * @example
 * ```ts
 * import { Rng } from "@qlora/webgpu";
 * import { lengthGroupedOrder } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * const order = lengthGroupedOrder([3, 9, 1, 4], 1, new Rng(0));
 * assert.equal(order[0], 1);
 * assert.deepEqual([...order].sort(), [0, 1, 2, 3]);
 * ```
 */
export function lengthGroupedOrder(lengths: readonly number[], batchSize: number, rng: Rng): number[] {
  const n = lengths.length;
  const mult = Math.max(Math.min(Math.floor(n / (batchSize * 4)), 50), 1);
  const size = mult * batchSize;
  const perm = rng.shuffle(Array.from({ length: n }, (_, i) => i));
  const megabatches: number[][] = [];
  for (let i = 0; i < n; i += size) {
    megabatches.push(perm.slice(i, i + size).sort((a, b) => lengths[b] - lengths[a]));
  }
  let longest = 0;
  for (let m = 1; m < megabatches.length; m++) {
    if (lengths[megabatches[m][0]] > lengths[megabatches[longest][0]]) longest = m;
  }
  [megabatches[0][0], megabatches[longest][0]] = [megabatches[longest][0], megabatches[0][0]];
  return megabatches.flat();
}

function _pad(examples: readonly Example[], padId: number): MicroBatch {
  const seqLen = Math.max(...examples.map((e) => e.inputIds.length));
  const inputIds = new Int32Array(examples.length * seqLen).fill(padId);
  const labels = new Int32Array(examples.length * seqLen).fill(IGNORE_INDEX);
  let tokens = 0;
  examples.forEach((e, s) => {
    inputIds.set(e.inputIds, s * seqLen);
    labels.set(e.labels, s * seqLen);
    tokens += e.targets;
  });
  return {
    batchSize: examples.length,
    seqLen,
    inputIds,
    labels,
    lengths: examples.map((e) => e.inputIds.length),
    tokens,
  };
}
