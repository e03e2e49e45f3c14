/**
 * The options and results of {@linkcode LlamaModel}'s loading, forward and backward, and its non-finite-loss error.
 *
 * @module
 */

import type { Tensor } from "../gpu/tensor.ts";
import type { Nf4Precision } from "../kernels/qlinear_nf4.ts";
import type { LoraConfig } from "../qlinear/lora_config.ts";
import type { QatBits } from "../qlinear/qat_bits.ts";
import type { LlamaConfig } from "./config.ts";
import type { HiddenLoss } from "./lm_head.ts";

/** Options of {@linkcode LlamaModel.load}. */
export interface LlamaLoadOptions {
  /** The configuration; default: the folder's `config.json`. */
  config?: LlamaConfig;
  /** LoRA settings (default {@linkcode resolveLoraConfig}'s); `null`: no adapters (inference only). */
  lora?: LoraConfig | null;
  /** Recompute each decoder layer in the backward instead of keeping its activations (default true). */
  gradientCheckpointing?: boolean;
  /** NF4 block size when quantizing on load (default 64). */
  blocksize?: number;
  /** Double-quantize the NF4 scales when quantizing on load (default true). */
  doubleQuant?: boolean;
  /**
   * Arithmetic of the NF4 products (default `f32`); `f16` (f16 tiles, f32 accumulation) needs the adapter's
   * `shader-f16` feature. Everything else stays f32.
   */
  precision?: Nf4Precision;
  /**
   * LLM-QAT: dense f32 projections (`QatLinear`) fake-quantized to these bits instead of NF4 with LoRA (needs
   * `lora: null`); `train` forms their weight gradients (default false: a teacher or evaluation model).
   */
  qat?: { bits: QatBits; train?: boolean } | null;
}

/** Options of {@linkcode LlamaModel.forward}. */
export interface ForwardOptions {
  /** Also return the logits of every position (default false). */
  logits?: boolean;
}

/** What {@linkcode LlamaModel.forward} returns. */
export interface ForwardResult {
  /** Summed cross-entropy over the counted targets (0 without labels). */
  lossSum: number;
  /** Targets counted in the loss (0 without labels). */
  tokens: number;
  /** `[B·T, V]` f32 logits when asked for (the caller destroys them), else null. */
  logits: Tensor | null;
}

/** Options of {@linkcode LlamaModel.forwardBackward}. */
export interface BackwardOptions {
  /** The gradient is that of `gradScale · lossSum` (default `1 / tokens`, the batch mean); pass `1 / total
   * tokens of the optimizer step` to weight micro-batches by their token counts. */
  gradScale?: number;
  /** Dropout seed of this micro-batch (default 0; use e.g. the step and micro-batch index). */
  seed?: number;
  /** A loss in place of the cross-entropy (e.g. LLM-QAT's distillation; see {@linkcode HiddenLoss}). */
  loss?: HiddenLoss;
  /**
   * Do not read the loss (no host wait): return its cross-entropy stats tensors instead, for the caller to read
   * later with other results (`checkCrossEntropy`) and free. The loss is then not checked before the backward: a
   * non-finite loss gives non-finite gradients, which the optimizer's step skips.
   */
  deferLoss?: boolean;
}

/** Loss of a micro-batch, from {@linkcode LlamaModel.forwardBackward}. */
export interface LossResult {
  /** Summed cross-entropy over the counted targets (NaN when deferred). */
  lossSum: number;
  /** Targets counted. */
  tokens: number;
  /** With `deferLoss`: the cross-entropy stats tensors (the caller frees them). */
  stats?: Tensor[];
}

/** Thrown when the loss (the logits) holds NaN or Inf; LoRA gradients are left untouched by that micro-batch. */
export class NonFiniteLossError extends Error {
  /**
   * Creates the error.
   *
   * @param message What was non-finite, and where.
   */
  constructor(message: string) {
    super(message);
    this.name = "NonFiniteLossError";
  }
}
