/**
 * The Llama-family causal LM on the GPU for QLoRA: loading (quantizing linear weights to NF4, or taking a
 * bitsandbytes 4-bit folder as is), forward to logits or loss, backward into the LoRA adapters only, with
 * per-layer gradient checkpointing, and KV-cached generation steps.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import type { LoraWeights } from "../io/peft.ts";
import { type LoraLayer, QLoRALinear } from "../qlinear/layer.ts";
import { type Batch, batchLengths, prepareTargets } from "./batch.ts";
import type { LlamaConfig } from "./config.ts";
import type { DecoderLayer, LayerActivations, LayerCheckpoint, LayerContext, Projection } from "./decoder_layer.ts";
import { KvCache } from "./kv_cache.ts";
import { headLogits, type HeadWeights, lossHead } from "./lm_head.ts";
export type { HeadWeights, HiddenLoss } from "./lm_head.ts";
export type { Projection } from "./decoder_layer.ts";
export * from "./llama_options.ts";
import {
  type BackwardOptions,
  type ForwardOptions,
  type ForwardResult,
  type LlamaLoadOptions,
  type LossResult,
  NonFiniteLossError,
} from "./llama_options.ts";
import type { ResolvedLoraConfig } from "../qlinear/lora_config.ts";
import type { QatBits } from "../qlinear/qat_bits.ts";
import { type AdapterArenas, loadModelWeights, type ModelWeights, shapeOnlyWeights } from "./model_weights.ts";
import { readCrossEntropy } from "../kernels/cross_entropy.ts";
import { embeddingForward } from "../kernels/embedding.ts";
import { ropeInvFreq, ropeTable } from "./rope.ts";
export { KvCache } from "./kv_cache.ts";

/**
 * A Llama-family causal LM with frozen NF4 linear weights, frozen embeddings/norms/`lm_head` (held as the
 * checkpoint stores them: f32, bf16 or f16), and trainable LoRA adapters.
 *
 * @example Train a step and generate on a tiny generated checkpoint
 * ```ts
 * import { LlamaModel, requestGpu } from "@qlora/webgpu";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeTinyLlama(dir, { layers: 1 });
 * const gpu = await requestGpu();
 * const model = await LlamaModel.load(gpu, dir, { lora: { r: 4 } });
 * const ids = new Int32Array([1, 5, 9, 13, 2, 6, 10, 14]);
 * const { lossSum, tokens } = await model.forwardBackward({ batchSize: 2, seqLen: 4, inputIds: ids, labels: ids });
 * assert.equal(tokens, 6);
 * assert.ok(lossSum > 0);
 * assert.equal(model.loraLayers().length, 7);
 * const cache = model.createKvCache(1, 8);
 * const logits = await model.prefill(cache, { batchSize: 1, seqLen: 2, inputIds: new Int32Array([1, 5]) });
 * assert.equal(logits.length, model.config.vocabSize);
 * cache.destroy();
 * model.destroy();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class LlamaModel {
  /** The device. */
  readonly gpu: Gpu;
  /** The model configuration. */
  readonly config: LlamaConfig;
  /** LoRA settings, or null without adapters. */
  readonly lora: ResolvedLoraConfig | null;
  /** LLM-QAT's bits when the projections are `QatLinear` layers, else null. */
  readonly qat: QatBits | null;
  /** Recompute layers in the backward (default true); false keeps every activation (faster, more memory). */
  gradientCheckpointing: boolean;
  readonly #embed: Tensor[];
  readonly #norm: Tensor;
  readonly #lmHead: Tensor[];
  readonly #layers: DecoderLayer[];
  readonly #lora: Map<string, LoraLayer>;
  readonly #adapters: AdapterArenas | null;
  #rope: Tensor | null = null;

  private constructor(
    gpu: Gpu,
    config: LlamaConfig,
    lora: ResolvedLoraConfig | null,
    weights: Omit<ModelWeights, "config" | "lora">,
    gradientCheckpointing: boolean,
  ) {
    this.gpu = gpu;
    this.config = config;
    this.lora = lora;
    this.qat = weights.qat;
    this.#embed = weights.embed;
    this.#norm = weights.norm;
    this.#lmHead = weights.lmHead;
    this.#layers = weights.layers;
    this.#adapters = weights.adapters;
    this.gradientCheckpointing = gradientCheckpointing;
    this.#lora = new Map();
    for (const l of this.#layers) for (const p of l.proj) if (p.hasAdapter()) this.#lora.set(p.path, p);
  }

  /**
   * Loads a model from a Hugging Face folder (safetensors bf16/f16/f32, single or sharded, or a bitsandbytes
   * 4-bit folder) or a single safetensors file (with `options.config`). Linear weights are quantized to NF4 on
   * the GPU unless already quantized; LoRA A is seeded kaiming-uniform and B zero (PEFT's init).
   *
   * @param gpu The device.
   * @param path Model folder (or safetensors file).
   * @param options Config, LoRA settings, checkpointing, quantization.
   * @returns The model.
   * @throws {Error} For an unsupported config, or a missing or mis-shaped tensor (naming it and the file).
   */
  static async load(gpu: Gpu, path: string, options: LlamaLoadOptions = {}): Promise<LlamaModel> {
    _checkPrecision(gpu, options);
    return LlamaModel.#from(gpu, await loadModelWeights(gpu, path, options), options);
  }

  /**
   * A model of `config` with zero weights, made by the same path as {@linkcode LlamaModel.load} (the same
   * tensors, quantized on the GPU) without reading a checkpoint: on an accounting-only device it sizes a run
   * before its weights are downloaded.
   *
   * @param gpu The device.
   * @param config The configuration.
   * @param options LoRA settings, checkpointing, quantization.
   * @returns The model.
   *
   * @example
   * ```ts
   * import { accountingGpu } from "@qlora/webgpu/gpu";
   * import { LlamaModel, parseLlamaConfig } from "@qlora/webgpu/model";
   * import assert from "node:assert/strict";
   * const config = parseLlamaConfig(JSON.parse(await Deno.readTextFile("tests/fixtures/configs/SmolLM2-135M.json")));
   * const { gpu } = accountingGpu({ limits: { maxBufferSize: 2 ** 32, maxStorageBufferBindingSize: 2 ** 31 } });
   * const model = await LlamaModel.fromConfig(gpu, config, { lora: { r: 8 } });
   * assert.equal(model.loraLayers().length, 7 * 30);
   * assert.ok(gpu.budget.report().byClass.weights > 100e6);
   * ```
   */
  static async fromConfig(gpu: Gpu, config: LlamaConfig, options: LlamaLoadOptions = {}): Promise<LlamaModel> {
    _checkPrecision(gpu, options);
    return LlamaModel.#from(gpu, await shapeOnlyWeights(gpu, config, options), options);
  }

  static #from(gpu: Gpu, w: ModelWeights, options: LlamaLoadOptions): LlamaModel {
    return new LlamaModel(gpu, w.config, w.lora, w, options.gradientCheckpointing ?? true);
  }

  /**
   * The projections with an adapter (`QLoRALinear` layers), in layer order, each with its module path, A/B
   * tensors and gradients.
   *
   * @returns The adapters (empty without LoRA).
   */
  loraLayers(): LoraLayer[] {
    return [...this.#lora.values()];
  }

  /**
   * The adapter of a module.
   *
   * @param path Module path, e.g. `model.layers.0.self_attn.q_proj`.
   * @returns The adapter.
   * @throws {Error} If the module has none.
   */
  loraLayer(path: string): LoraLayer {
    const l = this.#lora.get(path);
    if (!l) throw new Error(`Module "${path}" has no LoRA adapter (targets: ${this.lora?.targetModules ?? "none"})`);
    return l;
  }

  /**
   * Copies adapter weights into a module's A and B (e.g. from a PEFT adapter read by `readPeftAdapter`).
   *
   * @param path Module path, e.g. `model.layers.0.self_attn.q_proj`.
   * @param a `[r, inFeatures]` row-major.
   * @param b `[outFeatures, r]` row-major.
   * @throws {Error} If the module has no adapter or a size does not match, naming the module and shapes.
   */
  setLoraWeights(path: string, a: Float32Array, b: Float32Array): void {
    const l = this.loraLayer(path);
    if (a.length !== l.a.size || b.length !== l.b.size) {
      throw new Error(
        `Module "${path}": LoRA A has ${a.length} values and B ${b.length}, expected [${l.a.shape}] and [${l.b.shape}]`,
      );
    }
    l.a.write(a);
    l.b.write(b);
  }

  /**
   * Reads every adapter's A and B to the host, by module path (what `writePeftAdapter` takes as `modules`).
   *
   * @returns The weights with their layer shapes.
   */
  async loraWeights(): Promise<Map<string, LoraWeights>> {
    const out = new Map<string, LoraWeights>();
    for (const l of this.#lora.values()) {
      const { inFeatures, outFeatures } = l;
      out.set(l.path, { a: await l.a.toFloat32(), b: await l.b.toFloat32(), inFeatures, outFeatures });
    }
    return out;
  }

  /**
   * Every QLoRA projection (seven per layer, in layer order), with or without an adapter, e.g. to merge adapters
   * or inspect weights.
   *
   * @returns The layers.
   */
  linearLayers(): QLoRALinear[] {
    return this.projections().filter((p) => p instanceof QLoRALinear);
  }

  /**
   * Every projection, QLoRA or QAT (seven per layer, in layer order).
   *
   * @returns The projections.
   */
  projections(): Projection[] {
    return this.#layers.flatMap((l) => [...l.proj]);
  }

  /**
   * Zeroes every gradient accumulator (call after each optimizer step): the adapters' arena in one clear per buffer
   * (every adapter lives there), else each projection's own (QAT's weights).
   */
  zeroGrad(): void {
    if (this.#adapters) this.#adapters.grads.clear();
    else for (const p of this.projections()) p.zeroGrad();
  }

  /** The RoPE table, grown to cover `positions`. */
  #ropeFor(positions: number): Tensor {
    const max = this.config.maxPositionEmbeddings;
    if (positions > max) {
      throw new Error(`Sequence of ${positions} positions is longer than max_position_embeddings (${max})`);
    }
    if (!this.#rope || this.#rope.shape[0] < positions) {
      this.#rope?.destroy();
      const size = Math.min(max, 2 ** Math.ceil(Math.log2(Math.max(positions, 64))));
      this.#rope = ropeTable(this.gpu, ropeInvFreq(this.config), size);
    }
    return this.#rope;
  }

  #context(batch: Batch, lengths: number[], seed: number | null): LayerContext {
    const { batchSize: B, seqLen: T } = batch;
    const padded = lengths.some((l) => l < T);
    const seqLens = padded
      ? Tensor.fromArray(this.gpu, Uint32Array.from(lengths), [B], { dtype: "u32", class: "scratch", label: "lengths" })
      : null;
    return { B, T, seqLens, rope: this.#ropeFor(T), seed };
  }

  /**
   * Inference forward: loss over `batch.labels` (if given) and optionally the logits. Keeps no activations.
   *
   * @param batch Token ids `[B, T]`, right-padded, with optional labels.
   * @param options Whether to return logits.
   * @returns Loss sum, token count, logits.
   * @throws {NonFiniteLossError} If the logits hold NaN/Inf.
   */
  async forward(batch: Batch, options: ForwardOptions = {}): Promise<ForwardResult> {
    const h = this.hiddenStates(batch);
    const c = this.config;
    const logits = options.logits ? headLogits(this.gpu, h, this.#norm, this.#lmHead, c.rmsNormEps) : null;
    let res: LossResult = { lossSum: 0, tokens: 0 };
    if (batch.labels) {
      const { targets, tokens } = prepareTargets(batch, c.vocabSize);
      const { stats } = lossHead(this.gpu, h, this.#norm, this.#lmHead, targets, c.rmsNormEps, false, 1);
      h.destroy();
      res = { lossSum: await this.#readLoss(stats), tokens };
    } else {
      h.destroy();
    }
    return { ...res, logits };
  }

  /**
   * The final hidden state `[B·T, H]` of an inference forward (before the final norm; the caller frees it).
   *
   * @param batch Token ids `[B, T]`, right-padded.
   * @returns The hidden state.
   */
  hiddenStates(batch: Batch): Tensor {
    const lengths = batchLengths(batch, this.config.vocabSize);
    const ctx = this.#context(batch, lengths, null);
    let h = embeddingForward(this.gpu, this.#embed, batch.inputIds);
    for (const layer of this.#layers) {
      const { out } = layer.forward(h, ctx, false);
      h.destroy();
      h = out;
    }
    ctx.seqLens?.destroy();
    return h;
  }

  /** The frozen head (borrowed: the model keeps owning it). */
  get head(): HeadWeights {
    return { norm: this.#norm, lmHead: this.#lmHead, eps: this.config.rmsNormEps };
  }

  /**
   * Forward and backward of a training micro-batch: accumulates `gradScale · dLoss/d(A, B)` into every adapter's
   * `gradA`/`gradB` (frozen weights get no gradient). With gradient checkpointing only each layer's input is
   * kept through the forward; the backward recomputes the layer from it.
   *
   * @param batch Token ids and labels `[B, T]` (right-padded; labels -100 are ignored).
   * @param options Gradient scale and dropout seed.
   * @returns The loss sum and the count of targets.
   * @throws {NonFiniteLossError} If the loss is NaN/Inf (checked before the backward: gradients stay untouched).
   */
  async forwardBackward(batch: Batch, options: BackwardOptions = {}): Promise<LossResult> {
    if (!this.lora && !this.qat) {
      throw new Error(
        "forwardBackward: the model was loaded without LoRA adapters (lora: null) and without QAT layers",
      );
    }
    const c = this.config;
    const { targets, tokens, lengths } = prepareTargets(batch, c.vocabSize);
    const ctx = this.#context(batch, lengths, options.seed ?? 0);
    // A checkpoint is the layer input and what the layer's forward keeps for its recompute (each adapter's XA).
    const keep = this.gradientCheckpointing ? "checkpoint" : true;
    const inputs: Tensor[] = [];
    const saved: (LayerActivations | null)[] = [];
    const checkpoints: (LayerCheckpoint | null)[] = [];
    let h = embeddingForward(this.gpu, this.#embed, batch.inputIds);
    for (const layer of this.#layers) {
      const r = layer.forward(h, ctx, keep);
      inputs.push(h);
      saved.push(r.saved);
      checkpoints.push(r.checkpoint);
      h = r.out;
    }
    const gradScale = options.gradScale ?? 1 / Math.max(tokens, 1);
    let lossSum = NaN;
    let dh: Tensor;
    let stats: Tensor[] | undefined;
    try {
      if (options.loss) ({ lossSum, dh } = await options.loss(h, targets, gradScale));
      else {
        const head = lossHead(this.gpu, h, this.#norm, this.#lmHead, targets, c.rmsNormEps, true, gradScale);
        h.destroy();
        dh = head.dh!;
        stats = head.stats;
        if (!options.deferLoss) {
          lossSum = await this.#readLoss(head.stats).catch((e) => {
            dh.destroy();
            throw e;
          });
        }
      }
    } catch (e) {
      for (const t of inputs) t.destroy();
      for (const s of saved) if (s) _freeActivations(s);
      for (const c of checkpoints) c?.proj.forEach((t) => t?.destroy());
      ctx.seqLens?.destroy();
      throw e;
    }
    for (let l = this.#layers.length - 1; l >= 0; l--) {
      const layer = this.#layers[l];
      const s = saved[l] ?? layer.recompute(inputs[l], ctx, checkpoints[l]);
      const dx = layer.backward(dh, inputs[l], s, ctx, l > 0);
      inputs[l].destroy();
      if (dx) dh = dx;
    }
    ctx.seqLens?.destroy();
    return options.deferLoss && stats ? { lossSum, tokens, stats } : { lossSum, tokens };
  }

  async #readLoss(stats: Tensor[]): Promise<number> {
    let sum = 0;
    try {
      for (const s of stats) sum += (await readCrossEntropy(s)).sum;
    } catch (e) {
      throw new NonFiniteLossError(
        `Model "${this.config.architecture}": the loss is not finite: ${(e as Error).message}`,
      );
    } finally {
      for (const s of stats) s.destroy();
    }
    return sum;
  }

  /**
   * A key/value cache for generation.
   *
   * @param batchSize Sequences generated together.
   * @param capacity Positions per sequence (prompt plus generated tokens).
   * @returns An empty cache (destroy it when done).
   */
  createKvCache(batchSize: number, capacity: number): KvCache {
    this.#ropeFor(capacity);
    const c = this.config;
    return new KvCache(this.gpu, c.numLayers, batchSize, capacity, c.numKvHeads * c.headDim);
  }

  /**
   * Runs prompts through the model, appending to the cache, and returns the logits of each sequence's last
   * prompt token. Works with or without LoRA (adapters are applied, without dropout).
   *
   * @param cache From {@linkcode LlamaModel.createKvCache}, with `batch.batchSize` sequences.
   * @param batch Prompt ids `[B, T]`, right-padded (`lengths` or `attentionMask` for unequal prompts).
   * @returns `[B, V]` logits, row-major, on the host.
   */
  async prefill(cache: KvCache, batch: Batch): Promise<Float32Array> {
    const lengths = batchLengths(batch, this.config.vocabSize);
    const x = embeddingForward(this.gpu, this.#embed, batch.inputIds);
    return await this.#cachedStep(cache, x, batch.seqLen, lengths);
  }

  /**
   * Appends one token per sequence and returns the next-token logits.
   *
   * @param cache The cache filled by {@linkcode LlamaModel.prefill}.
   * @param tokenIds `[B]` the last sampled token of each sequence.
   * @returns `[B, V]` logits, row-major, on the host.
   */
  async decodeStep(cache: KvCache, tokenIds: Int32Array): Promise<Float32Array> {
    const x = embeddingForward(this.gpu, this.#embed, tokenIds);
    return await this.#cachedStep(cache, x, 1, new Array(cache.batchSize).fill(1));
  }

  async #cachedStep(cache: KvCache, x: Tensor, Tq: number, lengths: number[]): Promise<Float32Array> {
    const B = cache.batchSize;
    if (x.shape[0] !== B * Tq) {
      x.destroy();
      throw new Error(`KV cache holds ${B} sequences, got ${x.shape[0] / Tq}`);
    }
    const writeAt = [...cache.lengths];
    for (let b = 0; b < B; b++) {
      if (writeAt[b] + Tq > cache.capacity) {
        x.destroy();
        throw new Error(`KV cache: sequence ${b} would reach ${writeAt[b] + Tq} positions, capacity ${cache.capacity}`);
      }
    }
    const u32 = (v: number[], label: string) =>
      Tensor.fromArray(this.gpu, Uint32Array.from(v), [B], { dtype: "u32", class: "scratch", label });
    const offsets = u32(writeAt, "cache offsets");
    const newLens = writeAt.map((w, b) => w + lengths[b]);
    const seqLens = u32(newLens, "cache lengths");
    const ctx = { B, Tq, capacity: cache.capacity, rope: this.#ropeFor(cache.capacity), offsets, seqLens, writeAt };
    let h = x;
    for (const [l, layer] of this.#layers.entries()) {
      const out = layer.forwardCached(h, cache.k[l], cache.v[l], ctx);
      h.destroy();
      h = out;
    }
    offsets.destroy();
    seqLens.destroy();
    cache.lengths = newLens;
    const H = this.config.hiddenSize;
    const last = Tensor.empty(this.gpu, [B, H], { label: "last hidden" });
    for (let b = 0; b < B; b++) {
      const src = h.byteOffset + (b * Tq + lengths[b] - 1) * H * 4;
      this.gpu.copy(h.buffer, src, last.buffer, last.byteOffset + b * H * 4, H * 4);
    }
    h.destroy();
    const logits = headLogits(this.gpu, last, this.#norm, this.#lmHead, this.config.rmsNormEps);
    last.destroy();
    const out = await logits.toFloat32();
    logits.destroy();
    return out;
  }

  /** Frees every GPU buffer of the model. */
  destroy(): void {
    for (const l of this.#layers) l.destroy();
    for (const w of this.#embed) w.destroy();
    for (const w of this.#lmHead) if (!this.#embed.includes(w)) w.destroy();
    this.#norm.destroy();
    this.#rope?.destroy();
    this.#adapters?.params.destroy();
    this.#adapters?.grads.destroy();
    this.#rope = null;
  }
}

function _checkPrecision(gpu: Gpu, options: LlamaLoadOptions): void {
  if (options.precision === "f16" && !gpu.features.shaderF16) {
    throw new Error(`Precision f16 needs the shader-f16 feature, absent on ${gpu.adapterName}`);
  }
}

function _freeActivations(s: LayerActivations): void {
  for (const v of Object.values(s)) {
    if (Array.isArray(v)) v.forEach((p) => p.xa?.destroy());
    else v?.destroy();
  }
}
