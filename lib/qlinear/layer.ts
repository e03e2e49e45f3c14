/**
 * `QLoRALinear`: the linear layer the model is built of. A frozen 4-bit weight (and optional frozen bias) with a
 * trainable LoRA adapter and its gradient accumulators, or with no adapter at all (frozen-only). A thin layer over
 * `qlinearForward` / `qlinearBackward` / `loraDown` (and the frozen NF4 products for a frozen-only layer).
 *
 * The layer keeps no activations: a training forward returns a {@linkcode QLoRASaved} context that the caller
 * keeps (or drops, and later rebuilds with {@linkcode QLoRALinear.recompute}) and hands to the backward.
 *
 * @module
 */

import { Tensor } from "../gpu/tensor.ts";
import { quantizedMatrixShape } from "../kernels/_kernel.ts";
import { nf4Linear, nf4LinearGradInput, type Nf4Precision } from "../kernels/qlinear_nf4.ts";
import { freeQuantized } from "../kernels/nf4_quantize.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";
import { Rng } from "../random.ts";
import {
  type LoraAdapter,
  loraDown,
  qlinearBackward,
  qlinearForward,
  type QLinearForwardOptions,
} from "./functional.ts";

/** LoRA settings of one {@linkcode QLoRALinear} (PEFT's `LoraConfig`, for one module). */
export interface QLoRAAdapterOptions {
  /** LoRA rank `r`, in [1, min(N, K)]. */
  r: number;
  /** LoRA alpha (default `r`): scale `alpha / r`, or `alpha / √r` with `useRslora`. */
  alpha?: number;
  /** Dropout probability on the adapter input (default 0). */
  dropout?: number;
  /** Rank-stabilized LoRA scaling `alpha / √r` (PEFT's `use_rslora`). */
  useRslora?: boolean;
  /** Seed of A's initialization (default 0). */
  seed?: number;
}

/** Options of {@linkcode QLoRALinear}. */
export interface QLoRALinearOptions {
  /** Module path, e.g. `model.layers.0.self_attn.q_proj` (PEFT names adapters by it; default: the weight's label). */
  path?: string;
  /** The adapter's settings; omitted or null: a frozen-only layer (no adapter, nothing trainable). */
  lora?: QLoRAAdapterOptions | null;
  /** Frozen bias `[N]` f32 (the layer takes ownership). */
  bias?: Tensor | null;
  /** Arithmetic of the tiled quantized products, forward and backward (default `f32`; `f16` needs `shader-f16`). */
  precision?: Nf4Precision;
  /**
   * Where the adapter lives, e.g. views of a `TensorArena` (so one optimizer dispatch can cover many layers): A is
   * initialized into `a`, and `b`, `gradA`, `gradB` zeroed; they stay the caller's (the layer frees none of them).
   * Omitted: the layer allocates its own. Ignored without `lora`.
   */
  adapterTensors?: AdapterTensors;
}

/** Caller-provided tensors of a {@linkcode QLoRALinear}'s adapter: f32 `A`, `gradA` `[r, K]` and `B`, `gradB` `[N, r]`. */
export interface AdapterTensors {
  /** LoRA down projection `[r, K]`. */
  a: Tensor;
  /** LoRA up projection `[N, r]`. */
  b: Tensor;
  /** Gradient of `a`. */
  gradA: Tensor;
  /** Gradient of `b`. */
  gradB: Tensor;
}

/**
 * What a training forward of a {@linkcode QLoRALinear} leaves for its backward. The caller owns it: it passes it to
 * {@linkcode QLoRALinear.backward} (which frees `xa`), or frees `xa` itself when dropping it.
 */
export interface QLoRASaved {
  /** The forward's input `[M, K]`, borrowed: it stays the caller's, who must keep it until the backward. */
  readonly x: Tensor;
  /** The adapter's input `drop(X)·Aᵀ` `[M, r]` (owned by this context), or null for a frozen-only layer. */
  readonly xa: Tensor | null;
  /** The forward's dropout seed, or null when it ran without dropout. */
  readonly seed: number | null;
}

/** Options of {@linkcode QLoRALinear.forward}. */
export interface QLoRALinearForwardOptions {
  /** Dropout seed of a training forward; omitted or null: inference (no dropout). */
  seed?: number | null;
  /** Return the context the backward needs (default false: nothing is kept). */
  save?: boolean;
  /**
   * Without `save`, return what a gradient checkpoint keeps for the recompute: the adapter input `drop(x)·Aᵀ`
   * `[M, r]` (default false).
   */
  keepCheckpoint?: boolean;
  /**
   * What a `keepCheckpoint` forward of this input and seed returned: its `XA` is used instead of formed again, and
   * owned by the saved context (or freed).
   */
  checkpoint?: Tensor | null;
  /** Kernel for the quantized product (default `auto`). */
  path?: QLinearForwardOptions["path"];
  /** Add `y` into this `[M, N]` tensor (returned as `y`) instead of a new one: e.g. a residual, in one dispatch. */
  addTo?: Tensor;
}

/** What {@linkcode QLoRALinear.forward} returns. */
export interface QLoRALinearForwardResult {
  /** Output `[M, N]` f32 (the caller owns it). */
  y: Tensor;
  /** The context for the backward when `save` was asked for, else null. */
  saved: QLoRASaved | null;
  /** With `keepCheckpoint`: `drop(x)·Aᵀ` (the caller owns it); null or absent when nothing is kept. */
  checkpoint?: Tensor | null;
}

/** A {@linkcode QLoRALinear} with its adapter (not frozen-only), as `LlamaModel.loraLayers` lists them. */
export type LoraLayer = QLoRALinear & {
  /** LoRA down projection `[r, K]`. */
  readonly a: Tensor;
  /** LoRA up projection `[N, r]`. */
  readonly b: Tensor;
  /** `dLoss/dA` `[r, K]`, accumulated across backward calls until zeroed. */
  readonly gradA: Tensor;
  /** `dLoss/dB` `[N, r]`, accumulated across backward calls until zeroed. */
  readonly gradB: Tensor;
};

/**
 * A QLoRA linear layer `y = x·deq(W)ᵀ + s·(drop(x)·Aᵀ)·Bᵀ + b` owning `W` (quantized, frozen), an optional frozen
 * bias, and, unless frozen-only, `A [r, K]`, `B [N, r]` and the gradients `gradA`, `gradB` (accumulated over
 * backward calls until {@linkcode QLoRALinear.zeroGrad}). LoRA init as PEFT: `A ~ U(-1/√K, 1/√K)`
 * (Kaiming-uniform with `a = √5`), `B = 0`, so a fresh layer computes `x·deq(W)ᵀ + b`.
 *
 * @example Train step by hand: the forward's saved context goes to the backward
 * ```ts
 * import { QLoRALinear, quantizeNF4, requestGpu, Tensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const w = Tensor.fromArray(gpu, new Float32Array(64 * 64).fill(0.5), [64, 64], { label: "w" });
 * const layer = new QLoRALinear(await quantizeNF4(gpu, w), { path: "proj", lora: { r: 4, alpha: 8, dropout: 0.1 } });
 * assert.equal(layer.scale, 2);
 * const x = Tensor.fromArray(gpu, new Float32Array(64).fill(1), [1, 64]);
 * const { y, saved } = layer.forward(x, { seed: 7, save: true });
 * assert.ok((await y.toFloat32()).every((v) => Math.abs(v - 32) < 1e-4)); // B = 0: x·deq(W)ᵀ
 * layer.backward(Tensor.fromArray(gpu, new Float32Array(64).fill(1), [1, 64]), saved!);
 * assert.ok(layer.hasAdapter() && (await layer.gradB.toFloat32()).some((v) => v !== 0));
 * ```
 *
 * @example A frozen-only layer: no adapter, nothing to train
 * ```ts
 * import { QLoRALinear, quantizeNF4, requestGpu, Tensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const w = Tensor.fromArray(gpu, new Float32Array(64 * 64).fill(0.5), [64, 64], { label: "w" });
 * const layer = new QLoRALinear(await quantizeNF4(gpu, w));
 * assert.equal(layer.hasAdapter(), false);
 * assert.equal(layer.a, null);
 * const y = layer.forward(Tensor.fromArray(gpu, new Float32Array(64).fill(1), [1, 64])).y;
 * assert.ok((await y.toFloat32()).every((v) => Math.abs(v - 32) < 1e-4));
 * ```
 */
export class QLoRALinear {
  /** Module path (PEFT names the adapter by it). */
  readonly path: string;
  /** Frozen quantized weight `[N, K]`. */
  readonly weight: QuantizedTensor;
  /** Frozen bias `[N]`, or null. */
  readonly bias: Tensor | null;
  /** LoRA down projection `[r, K]`, or null when frozen-only. */
  readonly a: Tensor | null;
  /** LoRA up projection `[N, r]`, or null when frozen-only. */
  readonly b: Tensor | null;
  /** Gradient of `a`, or null when frozen-only. */
  readonly gradA: Tensor | null;
  /** Gradient of `b`, or null when frozen-only. */
  readonly gradB: Tensor | null;
  /** `alpha / r` (or `alpha / √r`); 0 when frozen-only. */
  readonly scale: number;
  /** Dropout probability; 0 when frozen-only. */
  readonly dropout: number;
  /** LoRA rank; 0 when frozen-only. */
  readonly r: number;
  /** Arithmetic of the tiled quantized products. */
  readonly precision: Nf4Precision;
  /** Input features `K`. */
  readonly inFeatures: number;
  /** Output features `N`. */
  readonly outFeatures: number;
  /** Whether `destroy` frees the adapter and its gradients (false when the caller provided them). */
  readonly #ownsAdapter: boolean;

  /**
   * Wraps a frozen quantized weight, with a fresh adapter (A seeded Kaiming-uniform, B zero) and zero gradients
   * when `options.lora` is given.
   *
   * @param weight Frozen quantized weight `[N, K]` (the layer takes ownership).
   * @param options Module path, adapter settings (or none), bias, precision.
   * @throws {Error} If the rank is outside [1, min(N, K)] or the dropout outside [0, 1), naming the module.
   */
  constructor(weight: QuantizedTensor, options: QLoRALinearOptions = {}) {
    const [N, K] = quantizedMatrixShape(weight);
    this.path = options.path ?? weight.label;
    this.weight = weight;
    this.bias = options.bias ?? null;
    this.precision = options.precision ?? "f32";
    this.inFeatures = K;
    this.outFeatures = N;
    const lora = options.lora;
    if (!lora) {
      this.#ownsAdapter = false;
      [this.a, this.b, this.gradA, this.gradB] = [null, null, null, null];
      [this.r, this.scale, this.dropout] = [0, 0, 0];
      return;
    }
    const { r, alpha = lora.r, dropout = 0, useRslora = false } = lora;
    if (!Number.isInteger(r) || r < 1 || r > Math.min(N, K)) {
      throw new Error(
        `QLoRALinear "${this.path}" [${N},${K}]: rank ${r} must be an integer in [1, ${Math.min(N, K)}]`,
      );
    }
    if (!(dropout >= 0 && dropout < 1)) {
      throw new RangeError(`QLoRALinear "${this.path}": dropout ${dropout} is outside [0, 1)`);
    }
    this.r = r;
    this.scale = QLoRALinear.scaleOf(alpha, r, useRslora);
    this.dropout = dropout;
    const gpu = weight.gpu;
    const bound = QLoRALinear.initBound(K);
    const label = weight.label;
    const init = new Rng(lora.seed ?? 0).uniformArray(r * K, -bound, bound);
    const given = options.adapterTensors;
    this.#ownsAdapter = !given;
    if (given) {
      const want = { a: [r, K], b: [N, r], gradA: [r, K], gradB: [N, r] };
      for (const [k, shape] of Object.entries(want)) {
        const t = given[k as keyof AdapterTensors];
        if (t.dtype !== "f32" || t.shape.join() !== shape.join()) {
          throw new Error(
            `QLoRALinear "${this.path}": adapterTensors.${k} "${t.label}" is [${t.shape}] ${t.dtype}, expected [${shape}] f32`,
          );
        }
      }
      ({ a: this.a, b: this.b, gradA: this.gradA, gradB: this.gradB } = given);
      this.a.write(init);
      for (const t of [this.b, this.gradA, this.gradB]) t.clear();
      return;
    }
    this.a = Tensor.fromArray(gpu, init, [r, K], { class: "weights", label: `${label}.lora_A` });
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

  /**
   * Whether the layer has an adapter (else it is frozen-only); narrows it to a {@linkcode LoraLayer}.
   *
   * @returns True with an adapter.
   */
  hasAdapter(): this is LoraLayer {
    return this.a !== null;
  }

  /** The adapter as `qlinearForward` takes it, with dropout only when a seed is given; null when frozen-only. */
  #adapter(seed: number | null): LoraAdapter | null {
    if (!this.a || !this.b) return null;
    return { a: this.a, b: this.b, scale: this.scale, dropout: seed === null ? 0 : this.dropout };
  }

  /**
   * `y = x·deq(W)ᵀ + s·(drop(x)·Aᵀ)·Bᵀ + b`: with a seed, dropout on the adapter input (training); without,
   * none (inference). With `save`, also the context the backward needs (the caller keeps `x` until then); with
   * `keepCheckpoint`, what the recompute can reuse of it (see {@linkcode QLoRALinear.recompute}).
   *
   * @param x Input `[M, K]` f32.
   * @param options Dropout seed, whether to save for the backward or keep a checkpoint, a kept one, kernel path, a
   *   tensor to add `y` into.
   * @returns `y` `[M, N]`, the saved context (or null), and with `keepCheckpoint` the checkpoint.
   */
  forward(x: Tensor, options: QLoRALinearForwardOptions = {}): QLoRALinearForwardResult {
    const seed = options.seed ?? null;
    const bias = this.bias ?? undefined;
    const { path, addTo: out } = options;
    const precision = this.precision;
    const accumulate = out !== undefined;
    const adapter = this.#adapter(seed);
    if (!adapter) {
      const y = nf4Linear(x, this.weight, { bias, path, precision, out, accumulate });
      return { y, saved: options.save ? { x, xa: null, seed } : null, checkpoint: null };
    }
    const xa0 = options.checkpoint ?? undefined;
    const { y, xa } = qlinearForward(x, this.weight, adapter, {
      bias,
      seed: seed ?? 0,
      path,
      precision,
      out,
      accumulate,
      xa: xa0,
    });
    if (options.save) return { y, saved: { x, xa, seed } };
    if (options.keepCheckpoint) return { y, saved: null, checkpoint: xa };
    xa.destroy();
    return { y, saved: null };
  }

  /**
   * The context a saving {@linkcode QLoRALinear.forward} with this seed returns, without forming `y` (for a
   * recompute whose output is not needed): only `drop(x)·Aᵀ`, with the forward's dropout mask (`loraDown`), or
   * the checkpoint a `keepCheckpoint` forward kept of it (no GPU work).
   *
   * @param x The forward's input `[M, K]` (kept by the caller until the backward).
   * @param seed The forward's dropout seed, or null for none.
   * @param checkpoint What a `keepCheckpoint` forward of `x` with this seed returned (owned by the context), or
   *   null.
   * @returns The saved context.
   */
  recompute(x: Tensor, seed: number | null, checkpoint: Tensor | null = null): QLoRASaved {
    const adapter = this.#adapter(seed);
    const label = `${this.weight.label} lora XA`;
    const xa = adapter && (checkpoint ?? loraDown(x, adapter, { seed: seed ?? 0, label }));
    return { x, xa, seed };
  }

  /**
   * Backward from a saved context: adds `dA`, `dB` into `gradA`, `gradB` and returns `dX` when asked. Consumes
   * the context (frees its `xa`; `x` stays the caller's).
   *
   * @param dy Output gradient `[M, N]` f32.
   * @param saved The forward's context.
   * @param needDx Form `dX` (default true).
   * @param addTo Add `dX` into this `[M, K]` tensor (returned) instead of a new one: e.g. the gradient of an input
   *   that several projections read, summed without a separate dispatch.
   * @returns `dX` `[M, K]` (the caller owns it), or null.
   */
  backward(dy: Tensor, saved: QLoRASaved, needDx = true, addTo?: Tensor): Tensor | null {
    const precision = this.precision;
    const adapter = this.#adapter(saved.seed);
    const accumulate = addTo !== undefined;
    if (!adapter || !saved.xa) {
      return needDx ? nf4LinearGradInput(dy, this.weight, { precision, out: addTo, accumulate }) : null;
    }
    const { dx } = qlinearBackward(dy, saved.x, saved.xa, this.weight, adapter, {
      seed: saved.seed ?? 0,
      needDx,
      dA: this.gradA!,
      dB: this.gradB!,
      accumulate: true,
      precision,
      dx: addTo,
      accumulateDx: accumulate,
    });
    saved.xa.destroy();
    return dx;
  }

  /** Zeroes the gradients (nothing to do when frozen-only). */
  zeroGrad(): void {
    this.gradA?.clear();
    this.gradB?.clear();
  }

  /** Frees the weight, bias, and the adapter and gradients unless the caller provided them. */
  destroy(): void {
    if (this.#ownsAdapter) { for (const t of [this.a, this.b, this.gradA, this.gradB]) t?.destroy(); }
    this.bias?.destroy();
    freeQuantized(this.weight);
  }
}
