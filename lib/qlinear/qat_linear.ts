/**
 * `QatLinear`: the dense layer of LLM-QAT, `y = fq_a(x) · fq_w(W)ᵀ (+ b)`, with an f32 master weight `W` `[N, K]`
 * that trains, fake-quantized per output channel (`fq_w`), and its input fake-quantized per token (`fq_a`), both by
 * symmetric MinMax (`fakeQuantRows`); an optional bias (Qwen2's q/k/v) stays frozen and in full precision. It has the forward/recompute/backward interface of `QLoRALinear`, so a
 * decoder layer holds either.
 *
 * Gradients: straight-through. The paper's code zeroes the gradient of values outside a clip range; with MinMax
 * scaling the range is the row's own max|x|, so no value lies outside it and the estimator is the identity:
 * `dW = dYᵀ · fq_a(x)` and `dX = dY · fq_w(W)`, both by `matmul_f32`.
 *
 * @module
 */

import { Tensor } from "../gpu/tensor.ts";
import { fakeQuantRows } from "../kernels/fake_quant.ts";
import { matmul } from "../kernels/matmul_f32.ts";
import { residualAdd } from "../kernels/residual_add.ts";
import type { LoraLayer, QLoRASaved } from "../qlinear/layer.ts";

/** Options of {@linkcode QatLinear}. */
export interface QatLinearOptions {
  /** Module path, e.g. `model.layers.0.self_attn.q_proj` (default: the weight's label). */
  path?: string;
  /** Weight bits (per output channel; default 16: not quantized). */
  weightBits?: number;
  /** Input bits (per token; default 16: not quantized). */
  inputBits?: number;
  /** Form `grad` and accept backward calls (default true; false: an inference or teacher layer). */
  trainable?: boolean;
  /** Frozen bias `[N]` f32, added unquantized (the layer takes ownership). */
  bias?: Tensor | null;
}

/**
 * A fake-quantized dense layer owning its f32 weight and (when trainable) its gradient, accumulated over
 * backward calls until {@linkcode QatLinear.zeroGrad}. The saved context's `xa` holds the fake-quantized input
 * (owned by the context), or null when the input is not quantized (the borrowed `x` is used).
 *
 * @example Four-bit weights: the forward uses the quantized weight, the gradient flows straight through
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { QatLinear } from "@qlora/webgpu/qlinear";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const w = Tensor.fromArray(gpu, new Float32Array([7, 1.4, -3.2, 0]), [1, 4], { label: "w" });
 * const layer = new QatLinear(w, { weightBits: 4 });
 * const x = Tensor.fromArray(gpu, new Float32Array([1, 1, 1, 1]), [1, 4]);
 * const { y, saved } = layer.forward(x, { save: true });
 * assert.deepEqual([...await y.toFloat32()], [5]); // 7 + 1 − 3 + 0
 * const dx = layer.backward(Tensor.fromArray(gpu, new Float32Array([1]), [1, 1]), saved!);
 * assert.deepEqual([...await dx!.toFloat32()], [7, 1, -3, 0]);
 * assert.deepEqual([...await layer.grad!.toFloat32()], [1, 1, 1, 1]);
 * ```
 */
export class QatLinear {
  /** Module path. */
  readonly path: string;
  /** The f32 master weight `[N, K]`, updated by the optimizer. */
  readonly weight: Tensor;
  /** `dLoss/dW` `[N, K]`, or null when not trainable. */
  readonly grad: Tensor | null;
  /** Weight bits (16: not quantized). */
  readonly weightBits: number;
  /** Input bits (16: not quantized). */
  readonly inputBits: number;
  /** Input features `K`. */
  readonly inFeatures: number;
  /** Output features `N`. */
  readonly outFeatures: number;
  /** Frozen bias `[N]`, or null. */
  readonly bias: Tensor | null;
  /** The fake-quantized weight (the weight itself at 16 bits). */
  #wq: Tensor;
  /** Whether `#wq` holds the current weight's quantization (see {@linkcode QatLinear.weightChanged}). */
  #wqFresh = false;

  /**
   * Wraps an f32 weight, with a zero gradient when trainable.
   *
   * @param weight f32 `[N, K]` (the layer takes ownership).
   * @param options Path, bits, whether it trains.
   * @throws {Error} If the weight is not a 2-D f32 matrix, or the bias not `[N]` f32, naming it.
   */
  constructor(weight: Tensor, options: QatLinearOptions = {}) {
    if (weight.shape.length !== 2 || weight.dtype !== "f32") {
      throw new Error(`QatLinear: weight "${weight.label}" is [${weight.shape}] ${weight.dtype}, expected [N, K] f32`);
    }
    this.path = options.path ?? weight.label;
    this.weight = weight;
    [this.outFeatures, this.inFeatures] = weight.shape;
    this.bias = options.bias ?? null;
    if (this.bias && (this.bias.shape.join() !== String(this.outFeatures) || this.bias.dtype !== "f32")) {
      throw new Error(
        `QatLinear: bias "${this.bias.label}" is [${this.bias.shape}] ${this.bias.dtype}, expected [${this.outFeatures}] f32`,
      );
    }
    this.weightBits = options.weightBits ?? 16;
    this.inputBits = options.inputBits ?? 16;
    const trainable = options.trainable ?? true;
    this.grad = trainable ? Tensor.empty(weight.gpu, weight.shape, { label: `${weight.label}.grad` }) : null;
    this.#wq = this.weightBits < 16
      ? Tensor.empty(weight.gpu, weight.shape, { class: "weights", label: `${weight.label} fake-quantized` })
      : weight;
  }

  /** A QAT layer has no LoRA adapter. */
  hasAdapter(): this is LoraLayer {
    return false;
  }

  /** `fq_a(x)`: a fake-quantized copy (owned by the caller), or null at 16 bits. */
  #quantInput(x: Tensor): Tensor | null {
    if (this.inputBits >= 16) return null;
    const xq = Tensor.empty(x.gpu, x.shape, { label: `${this.path} quantized input` });
    x.gpu.copy(x.buffer, x.byteOffset, xq.buffer, xq.byteOffset, x.byteLength);
    return fakeQuantRows(x.gpu, xq, this.inFeatures, this.inputBits);
  }

  /**
   * Marks the cached fake-quantized weight stale, so the next forward quantizes `weight` again: call it after
   * writing `weight` (an optimizer step, loading a checkpoint). Until then every forward, recompute and backward
   * (of all micro-batches, and every decoding step) reuses one quantization.
   *
   * @example
   * ```ts
   * import { requestGpu, Tensor } from "@qlora/webgpu";
   * import { QatLinear } from "@qlora/webgpu/qlinear";
   * import assert from "node:assert/strict";
   * const gpu = await requestGpu();
   * const layer = new QatLinear(Tensor.fromArray(gpu, new Float32Array([7, 1.4]), [1, 2]), { weightBits: 4 });
   * const x = Tensor.fromArray(gpu, new Float32Array([1, 1]), [1, 2]);
   * assert.deepEqual([...await layer.forward(x).y.toFloat32()], [8]);
   * layer.weight.write(new Float32Array([-7, 0]));
   * assert.deepEqual([...await layer.forward(x).y.toFloat32()], [8]); // still the cached quantization
   * layer.weightChanged();
   * assert.deepEqual([...await layer.forward(x).y.toFloat32()], [-7]);
   * ```
   */
  weightChanged(): void {
    this.#wqFresh = false;
  }

  /**
   * `y = fq_a(x) · fq_w(W)ᵀ`. Quantizes the weight first unless its quantization is cached (it is until
   * {@linkcode QatLinear.weightChanged}).
   *
   * @param x Input `[M, K]` f32.
   * @param options `save`: return the context the backward needs; `addTo`: add `y` into this tensor (returned as
   *   `y`) instead of a new one; `seed` is ignored (no dropout).
   * @returns `y` `[M, N]` and the saved context (or null).
   */
  forward(x: Tensor, options: { seed?: number | null; save?: boolean; addTo?: Tensor } = {}): {
    y: Tensor;
    saved: QLoRASaved | null;
  } {
    if (this.#wq !== this.weight && !this.#wqFresh) {
      const [w, wq] = [this.weight, this.#wq];
      w.gpu.copy(w.buffer, w.byteOffset, wq.buffer, wq.byteOffset, w.byteLength);
      fakeQuantRows(this.weight.gpu, this.#wq, this.inFeatures, this.weightBits);
      this.#wqFresh = true;
    }
    const xq = this.#quantInput(x);
    const { addTo } = options;
    let y: Tensor;
    if (addTo && !this.bias) {
      y = matmul(xq ?? x, this.#wq, { transB: true, out: addTo, accumulate: true });
    } else {
      y = matmul(xq ?? x, this.#wq, { transB: true, label: `${this.path} out` });
      if (this.bias) this.#addBias(y);
      // With a bias, x·Wᵀ + b is rounded before the residual is added, as without addTo.
      if (addTo) {
        residualAdd(x.gpu, addTo, y);
        y.destroy();
        y = addTo;
      }
    }
    if (options.save) return { y, saved: { x, xa: xq, seed: null } };
    xq?.destroy();
    return { y, saved: null };
  }

  /** `y += b` on every row, as the rank-1 product `1 · b` (exact: one addition per element). */
  #addBias(y: Tensor): void {
    const gpu = y.gpu;
    const ones = Tensor.fromArray(gpu, new Float32Array(y.shape[0]).fill(1), [y.shape[0], 1], { class: "scratch" });
    const bias = this.bias!;
    const row = Tensor.view(gpu, bias.buffer, bias.byteOffset, [1, this.outFeatures], { label: `${this.path} bias` });
    matmul(ones, row, { out: y, accumulate: true });
    ones.destroy();
  }

  /**
   * The context of a saving forward, without forming `y`: the quantized input only. A QAT layer keeps no gradient
   * checkpoint for this (its forward returns none): the quantized input is as large as `x`, and quantizing again is
   * cheap.
   *
   * @param x The forward's input (kept by the caller until the backward).
   * @returns The saved context.
   */
  recompute(x: Tensor): QLoRASaved {
    return { x, xa: this.#quantInput(x), seed: null };
  }

  /**
   * Adds `dYᵀ · fq_a(x)` into `grad` and returns `dY · fq_w(W)` when asked (straight-through). Consumes the
   * context (frees its quantized input; `x` stays the caller's). Uses the quantized weight of the forward.
   *
   * @param dy Output gradient `[M, N]`.
   * @param saved The forward's context.
   * @param needDx Form `dX` (default true).
   * @param addTo Add `dX` into this tensor (returned) instead of a new one.
   * @returns `dX` `[M, K]` (the caller owns it), or null.
   * @throws {Error} If the layer is not trainable, naming it.
   */
  backward(dy: Tensor, saved: QLoRASaved, needDx = true, addTo?: Tensor): Tensor | null {
    if (!this.grad) throw new Error(`QatLinear "${this.path}": backward of a layer made with trainable: false`);
    matmul(dy, saved.xa ?? saved.x, { transA: true, out: this.grad, accumulate: true });
    saved.xa?.destroy();
    if (!needDx) return null;
    return matmul(dy, this.#wq, { label: `${this.path} dx`, out: addTo, accumulate: addTo !== undefined });
  }

  /** Zeroes the gradient. */
  zeroGrad(): void {
    this.grad?.write(new Float32Array(this.grad.size));
  }

  /** Frees the weight, its quantized copy, the bias and the gradient. */
  destroy(): void {
    if (this.#wq !== this.weight) this.#wq.destroy();
    this.weight.destroy();
    this.bias?.destroy();
    this.grad?.destroy();
  }
}
