/**
 * One frozen NF4 projection of a decoder layer with its optional LoRA adapter and gradient accumulators.
 *
 * @module
 */

import type { Tensor } from "../gpu/tensor.ts";
import { matmul } from "../kernels/matmul_f32.ts";
import { nf4Linear, nf4LinearGradInput, type Nf4Precision } from "../kernels/qlinear_nf4.ts";
import { type LoraAdapter, qlinearBackward, qlinearForward } from "../qlinear/functional.ts";
import { QLoRALinear } from "../qlinear/layer.ts";
import { freeQuantized } from "../kernels/nf4_quantize.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";

/**
 * A LoRA-adapted projection as the model exposes it: the adapter (`a` `[r, K]`, `b` `[N, r]`, scale, dropout),
 * its gradient accumulators, and its Hugging Face module path. Write A/B with `Tensor.write` (e.g. to load a PEFT
 * adapter); read or zero the gradients between optimizer steps.
 */
export interface LoraLayer extends LoraAdapter {
  /** Module path, e.g. `model.layers.0.self_attn.q_proj`. */
  readonly path: string;
  /** Input features `K`. */
  readonly inFeatures: number;
  /** Output features `N`. */
  readonly outFeatures: number;
  /** `dLoss/dA` `[r, K]`, accumulated across micro-batches until zeroed. */
  readonly gradA: Tensor;
  /** `dLoss/dB` `[N, r]`, accumulated across micro-batches until zeroed. */
  readonly gradB: Tensor;
}

/** Output of {@linkcode Projection.forward}: `y`, and `xa` (the LoRA `X·Aᵀ`, kept for the backward) or null. */
export interface ProjectionOutput {
  /** `[M, N]`. */
  y: Tensor;
  /** `[M, r]`, or null without an adapter. */
  xa: Tensor | null;
}

/** LoRA settings of one projection (see `QLoRALinear`). */
export interface ProjectionLora {
  /** Rank. */
  r: number;
  /** Scale numerator. */
  alpha: number;
  /** Dropout probability. */
  dropout: number;
  /** `alpha / sqrt(r)` scaling. */
  useRslora: boolean;
  /** Seed of A's initialisation. */
  seed: number;
}

/**
 * A frozen quantized weight `[N, K]`, an optional frozen bias `[N]`, and an optional LoRA adapter (held by a
 * `QLoRALinear`, which gives PEFT's init: A kaiming-uniform, B zeros). Forward and backward go through the
 * stateless QLoRA functions, so the caller decides what is kept for the backward (checkpointing).
 */
export class Projection {
  /** Module path. */
  readonly path: string;
  /** The frozen NF4 weight. */
  readonly weight: QuantizedTensor;
  /** Frozen bias (Qwen2 q/k/v), or null. */
  readonly bias: Tensor | null;
  /** The adapter, or null when this module is not a LoRA target. */
  readonly lora: LoraLayer | null;
  readonly #layer: QLoRALinear | null;
  readonly #precision: Nf4Precision;

  /**
   * Wraps a weight, creating the adapter when `lora` is given.
   *
   * @param path Module path.
   * @param weight Frozen weight `[N, K]` (owned from now on).
   * @param bias Frozen bias `[N]` or null (owned).
   * @param lora Adapter settings, or null for a frozen-only projection.
   * @param precision Arithmetic of the quantized products (`f16` needs `shader-f16`).
   */
  constructor(
    path: string,
    weight: QuantizedTensor,
    bias: Tensor | null,
    lora: ProjectionLora | null,
    precision: Nf4Precision = "f32",
  ) {
    this.path = path;
    this.#precision = precision;
    this.weight = weight;
    this.bias = bias;
    this.#layer = lora ? new QLoRALinear(weight, { ...lora, bias: bias ?? undefined }) : null;
    const q = this.#layer;
    this.lora = q && {
      path,
      inFeatures: q.inFeatures,
      outFeatures: q.outFeatures,
      a: q.a,
      b: q.b,
      gradA: q.gradA,
      gradB: q.gradB,
      scale: q.scale,
      dropout: q.dropout,
    };
  }

  /**
   * `Y = X·deq(W)ᵀ (+ b) (+ s·drop(X)·Aᵀ·Bᵀ)`.
   *
   * @param x Input `[M, K]`.
   * @param seed Dropout seed (the backward gets the same one), or null for inference (no dropout).
   * @returns `y` and the adapter's `xa`.
   */
  forward(x: Tensor, seed: number | null): ProjectionOutput {
    const bias = this.bias ?? undefined;
    const precision = this.#precision;
    if (!this.lora) return { y: nf4Linear(x, this.weight, { bias, precision }), xa: null };
    const lora = seed === null ? { ...this.lora, dropout: 0 } : this.lora;
    return qlinearForward(x, this.weight, lora, { bias, seed: seed ?? 0, precision });
  }

  /**
   * The adapter's `xa = drop(X)·Aᵀ` alone, as {@linkcode Projection.forward} keeps it (same dropout mask for
   * the same seed), without the frozen product: for a recompute whose output is not needed.
   *
   * @param x Input `[M, K]`.
   * @param seed The forward's dropout seed.
   * @returns `xa` `[M, r]`, or null without an adapter.
   */
  adapterInput(x: Tensor, seed: number | null): Tensor | null {
    if (!this.lora) return null;
    const p = seed === null ? 0 : this.lora.dropout ?? 0;
    // The mask qlinearForward applies: keyed by the element index of X (operand "a").
    return matmul(x, this.lora.a, { transB: true, dropout: p > 0 ? { p, seed: seed!, on: "a" } : undefined });
  }

  /**
   * Accumulates the adapter's gradients and returns `dX` (or null when `needDx` is false).
   *
   * @param dy Output gradient `[M, N]`.
   * @param x The forward's input.
   * @param xa The forward's `xa`.
   * @param seed The forward's dropout seed.
   * @param needDx Whether to form `dX`.
   * @returns `dX` `[M, K]` or null.
   */
  backward(dy: Tensor, x: Tensor, xa: Tensor | null, seed: number, needDx: boolean): Tensor | null {
    const precision = this.#precision;
    if (!this.lora || !xa) return needDx ? nf4LinearGradInput(dy, this.weight, { precision }) : null;
    const { dx } = qlinearBackward(dy, x, xa, this.weight, this.lora, {
      seed,
      precision,
      needDx,
      dA: this.lora.gradA,
      dB: this.lora.gradB,
      accumulate: true,
    });
    return dx;
  }

  /** Zeroes the adapter's gradients. */
  zeroGrad(): void {
    this.#layer?.zeroGrad();
  }

  /** Frees the weight, bias and adapter buffers. */
  destroy(): void {
    if (this.#layer) {
      this.#layer.destroy();
    } else {
      freeQuantized(this.weight);
      this.bias?.destroy();
    }
  }
}
