/**
 * `QLoRALinear`: a frozen 4-bit weight with a trainable LoRA adapter, its gradients, and what the forward keeps
 * for the backward. A thin layer over `qlinearForward` / `qlinearBackward`.
 *
 * @module
 */

import { Tensor } from "../gpu/tensor.ts";
import { quantizedMatrixShape } from "../kernels/_kernel.ts";
import type { Nf4Precision } from "../kernels/qlinear_nf4.ts";
import { freeQuantized } from "../kernels/nf4_quantize.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";
import { Rng } from "../random.ts";
import { type LoraAdapter, qlinearBackward, qlinearForward, type QLinearForwardOptions } from "./functional.ts";

/** Options of {@linkcode QLoRALinear}. */
export interface QLoRALinearOptions {
  /** LoRA rank `r`, in [1, min(N, K)]. */
  r: number;
  /** LoRA alpha (default `r`): scale `alpha / r`, or `alpha / √r` with `useRslora`. */
  alpha?: number;
  /** Dropout probability on the adapter input (default 0). */
  dropout?: number;
  /** Rank-stabilized LoRA scaling `alpha / √r` (PEFT's `use_rslora`). */
  useRslora?: boolean;
  /** Frozen bias `[N]` f32 (the layer takes ownership). */
  bias?: Tensor;
  /** Seed of A's initialization and of the dropout seeds (default 0). */
  seed?: number;
  /** Arithmetic of the tiled quantized products, forward and backward (default `f32`; `f16` needs `shader-f16`). */
  precision?: Nf4Precision;
}

/** Options of {@linkcode QLoRALinear.forward}. */
export interface QLoRALinearForwardOptions {
  /** Dropout seed (default: the next from the layer's generator); pass the same one to recompute a forward. */
  seed?: number;
  /** Keep `X`, `drop(X)·Aᵀ` and the seed for {@linkcode QLoRALinear.backward} (default true). */
  train?: boolean;
  /** Kernel for the quantized product (default `auto`). */
  path?: QLinearForwardOptions["path"];
}

/**
 * A QLoRA linear layer `y = x·deq(W)ᵀ + s·(drop(x)·Aᵀ)·Bᵀ + b` owning `W` (quantized, frozen), `A [r, K]`,
 * `B [N, r]`, an optional frozen bias, and the gradients `gradA`, `gradB` (accumulated over backward calls until
 * {@linkcode QLoRALinear.zeroGrad}). LoRA init as PEFT: `A ~ U(-1/√K, 1/√K)` (Kaiming-uniform with `a = √5`),
 * `B = 0`, so a fresh layer computes `x·deq(W)ᵀ + b`.
 *
 * @example A fresh layer (B = 0) computes x·deq(W)ᵀ
 * ```ts
 * import { QLoRALinear, quantizeNF4, requestGpu, Tensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const w = Tensor.fromArray(gpu, new Float32Array(64 * 64).fill(0.5), [64, 64], { label: "w" });
 * const layer = new QLoRALinear(await quantizeNF4(gpu, w), { r: 4, alpha: 8, dropout: 0.1, seed: 1 });
 * assert.equal(layer.scale, 2);
 * const x = Tensor.fromArray(gpu, new Float32Array(64).fill(1), [1, 64]);
 * const y = await layer.forward(x).toFloat32();
 * assert.ok(y.every((v) => Math.abs(v - 32) < 1e-4));
 * layer.backward(Tensor.fromArray(gpu, new Float32Array(64).fill(1), [1, 64]));
 * assert.ok((await layer.gradB.toFloat32()).some((v) => v !== 0));
 * ```
 */
export class QLoRALinear {
  /** Frozen quantized weight `[N, K]`. */
  readonly weight: QuantizedTensor;
  /** Frozen bias `[N]`, or null. */
  readonly bias: Tensor | null;
  /** LoRA down projection `[r, K]`. */
  readonly a: Tensor;
  /** LoRA up projection `[N, r]`. */
  readonly b: Tensor;
  /** Gradient of `a`. */
  readonly gradA: Tensor;
  /** Gradient of `b`. */
  readonly gradB: Tensor;
  /** `alpha / r` (or `alpha / √r`). */
  readonly scale: number;
  /** Dropout probability. */
  readonly dropout: number;
  /** Arithmetic of the tiled quantized products. */
  readonly precision: Nf4Precision;
  /** Input features `K`. */
  readonly inFeatures: number;
  /** Output features `N`. */
  readonly outFeatures: number;
  /** LoRA rank. */
  readonly r: number;

  #rng: Rng;
  #saved: { x: Tensor; xa: Tensor; seed: number } | null = null;
  #gradsZero = true;

  /**
   * Wraps a frozen quantized weight with a fresh adapter (A seeded Kaiming-uniform, B zero) and zero gradients.
   *
   * @param weight Frozen quantized weight `[N, K]` (the layer takes ownership).
   * @param options Rank, alpha, dropout, rsLoRA, bias, seed.
   * @throws {Error} If the rank is outside [1, min(N, K)] or the bias shape is wrong.
   */
  constructor(weight: QuantizedTensor, options: QLoRALinearOptions) {
    const [N, K] = quantizedMatrixShape(weight);
    const { r, alpha = options.r, dropout = 0, useRslora = false } = options;
    if (!Number.isInteger(r) || r < 1 || r > Math.min(N, K)) {
      throw new Error(
        `QLoRALinear "${weight.label}" [${N},${K}]: rank ${r} must be an integer in [1, ${Math.min(N, K)}]`,
      );
    }
    if (!(dropout >= 0 && dropout < 1)) {
      throw new RangeError(`QLoRALinear "${weight.label}": dropout ${dropout} is outside [0, 1)`);
    }
    const gpu = weight.gpu;
    this.weight = weight;
    this.bias = options.bias ?? null;
    this.inFeatures = K;
    this.outFeatures = N;
    this.r = r;
    this.scale = QLoRALinear.scaleOf(alpha, r, useRslora);
    this.dropout = dropout;
    this.precision = options.precision ?? "f32";
    this.#rng = new Rng(options.seed ?? 0);
    const bound = QLoRALinear.initBound(K);
    const label = weight.label;
    this.a = Tensor.fromArray(gpu, this.#rng.uniformArray(r * K, -bound, bound), [r, K], {
      class: "weights",
      label: `${label}.lora_A`,
    });
    this.b = Tensor.empty(gpu, [N, r], { class: "weights", label: `${label}.lora_B` });
    this.gradA = Tensor.empty(gpu, [r, K], { label: `${label}.lora_A.grad` });
    this.gradB = Tensor.empty(gpu, [N, r], { label: `${label}.lora_B.grad` });
  }

  /**
   * PEFT's init bound of A: `kaiming_uniform_(a=√5)` on `[r, K]` gives `√(6 / ((1 + 5)·K)) = 1/√K`.
   *
   * @param inFeatures `K`.
   * @returns The bound of the uniform distribution.
   */
  static initBound(inFeatures: number): number {
    return 1 / Math.sqrt(inFeatures);
  }

  /**
   * The LoRA scale: `alpha / r`, or `alpha / √r` for rsLoRA.
   *
   * @param alpha LoRA alpha.
   * @param r Rank.
   * @param useRslora Rank-stabilized scaling.
   * @returns The scale.
   */
  static scaleOf(alpha: number, r: number, useRslora: boolean): number {
    return useRslora ? alpha / Math.sqrt(r) : alpha / r;
  }

  /** The adapter as {@linkcode qlinearForward} takes it. */
  get adapter(): LoraAdapter {
    return { a: this.a, b: this.b, scale: this.scale, dropout: this.dropout };
  }

  /**
   * `y = x·deq(W)ᵀ + s·(drop(x)·Aᵀ)·Bᵀ + b`. In training mode keeps `x` (which the caller must not free before
   * the backward), `drop(x)·Aᵀ` and the dropout seed.
   *
   * @param x Input `[M, K]` f32.
   * @param options Dropout seed, training mode, kernel path.
   * @returns `y` `[M, N]` f32 (the caller owns it).
   */
  forward(x: Tensor, options: QLoRALinearForwardOptions = {}): Tensor {
    const seed = options.seed ?? this.#rng.nextU32();
    const { y, xa } = qlinearForward(x, this.weight, this.adapter, {
      bias: this.bias ?? undefined,
      seed,
      path: options.path,
      precision: this.precision,
    });
    this.#release();
    if (options.train ?? true) {
      this.#saved = { x, xa, seed };
    } else {
      xa.destroy();
    }
    return y;
  }

  /**
   * Backward of the last training forward: adds `dA`, `dB` into `gradA`, `gradB` and returns `dX`.
   *
   * @param dy Output gradient `[M, N]` f32.
   * @param needDx Form `dX` (default true).
   * @returns `dX` `[M, K]` (the caller owns it), or null.
   * @throws {Error} Without a preceding training forward.
   */
  backward(dy: Tensor, needDx = true): Tensor | null {
    const saved = this.#saved;
    if (!saved) throw new Error(`QLoRALinear "${this.weight.label}": backward without a training forward`);
    const { dx } = qlinearBackward(dy, saved.x, saved.xa, this.weight, this.adapter, {
      seed: saved.seed,
      needDx,
      dA: this.gradA,
      dB: this.gradB,
      accumulate: !this.#gradsZero,
      precision: this.precision,
    });
    this.#gradsZero = false;
    this.#release();
    return dx;
  }

  /** Zeroes the gradients: the next backward overwrites them instead of adding. */
  zeroGrad(): void {
    const gpu = this.a.gpu;
    for (const g of [this.gradA, this.gradB]) {
      gpu.write(g.buffer, new Float32Array(g.size));
    }
    this.#gradsZero = true;
  }

  /** Frees the adapter, gradients, saved activations, bias and the quantized weight's buffers. */
  destroy(): void {
    this.#release();
    for (const t of [this.a, this.b, this.gradA, this.gradB, this.bias]) t?.destroy();
    freeQuantized(this.weight);
  }

  #release(): void {
    this.#saved?.xa.destroy();
    this.#saved = null;
  }
}
