/**
 * Loading a Llama-family model's weights onto the GPU for `LlamaModel.load`: the configuration, every decoder
 * layer (norms, Qwen3's q/k norms, the seven projections as `QLoRALinear` layers, quantized to NF4 on the GPU
 * unless the folder is bitsandbytes 4-bit, or as LLM-QAT's dense `QatLinear` layers), the final norm and `lm_head` in vocabulary chunks.
 *
 * @module
 */

import { assertFinite } from "../dtype.ts";
import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import { QuantizedCheckpoint } from "../io/bnb_loader.ts";
import { QLoRALinear } from "../qlinear/layer.ts";
import { QatLinear } from "../qlinear/qat_linear.ts";
import type { QatBits } from "../qlinear/qat_bits.ts";
import { fakeQuantRows } from "../kernels/fake_quant.ts";
import { quantizeNF4 } from "../kernels/nf4_quantize.ts";
import { deriveSeed } from "../random.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";
import { type LlamaConfig, loadLlamaConfig, parseLlamaConfig } from "./config.ts";
import { DecoderLayer, type LayerProjections, type Projection } from "./decoder_layer.ts";
import type { LlamaLoadOptions } from "./llama_options.ts";
import { vocabChunks } from "./lm_head.ts";
import { LORA_TARGETS, loraModulePath, type ResolvedLoraConfig, resolveLoraConfig } from "../qlinear/lora_config.ts";

/** What {@linkcode loadModelWeights} returns: the parts a `LlamaModel` is made of (the caller owns them). */
export interface ModelWeights {
  /** The configuration (the options' or the folder's). */
  config: LlamaConfig;
  /** LoRA settings, or null without adapters. */
  lora: ResolvedLoraConfig | null;
  /** `model.embed_tokens.weight` `[V, H]`. */
  embed: Tensor;
  /** `model.norm.weight` `[H]`. */
  norm: Tensor;
  /** `lm_head` (or the tied embedding) in vocabulary chunks that fit a storage binding. */
  lmHead: Tensor[];
  /** The decoder layers. */
  layers: DecoderLayer[];
  /** LLM-QAT's bits when the projections are `QatLinear` layers, else null. */
  qat: QatBits | null;
}

/**
 * Refuses what the model would otherwise get wrong silently: tensors of layers past `num_hidden_layers` (left
 * out) and an untied model without `lm_head.weight` (not to be replaced by the embeddings).
 */
function _checkTensorNames(ckpt: QuantizedCheckpoint, c: LlamaConfig, path: string): void {
  const extra = [...ckpt.quantizedNames(), ...ckpt.plainNames()].find((n) => {
    const m = /^model\.layers\.(\d+)\./.exec(n);
    return m !== null && Number(m[1]) >= c.numLayers;
  });
  if (extra !== undefined) {
    throw new Error(`${path}: tensor "${extra}" is past num_hidden_layers = ${c.numLayers} in config.json`);
  }
  if (!c.tieWordEmbeddings && !ckpt.checkpoint.has("lm_head.weight")) {
    throw new Error(
      `${path}: tensor "lm_head.weight" is missing and tie_word_embeddings is false in config.json (false when ` +
        "absent, as in transformers)",
    );
  }
}

/** The seven projection shapes `[N, K]` of a layer, in {@linkcode LORA_TARGETS} order. */
function _projShapes(c: LlamaConfig): [number, number][] {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const H = c.hiddenSize;
  const I = c.intermediateSize;
  return [[q, H], [kv, H], [kv, H], [H, q], [I, H], [I, H], [H, I]];
}

/** Where {@linkcode _buildWeights} gets tensors: a checkpoint, or nothing but shapes. */
interface _WeightSource {
  /**
   * A frozen tensor of `shape` (checked against the source), filled from it; its values are checked finite
   * unless `quantizing` (the NF4 quantizer checks them on the GPU).
   */
  plain(name: string, shape: number[], quantizing?: boolean): Promise<Tensor>;
  /** The tensor as stored quantized, or null when it is to be quantized on load. */
  quantized(name: string, shape: number[]): Promise<QuantizedTensor | null>;
}

/**
 * Reads, checks and uploads a model's weights (see `LlamaModel.load`). On an error everything made so far is
 * freed.
 *
 * @param gpu The device.
 * @param path Model folder (or safetensors file).
 * @param options Config, LoRA settings, quantization, precision, binding limit.
 * @returns The configuration, LoRA settings and weights.
 * @throws {Error} For an unsupported config, or a missing or mis-shaped tensor (naming it and the file).
 */
export async function loadModelWeights(gpu: Gpu, path: string, options: LlamaLoadOptions): Promise<ModelWeights> {
  const ckpt = await QuantizedCheckpoint.open(path);
  try {
    const config = options.config ??
      (ckpt.config ? parseLlamaConfig(ckpt.config, `${path}/config.json`) : await loadLlamaConfig(path));
    _checkTensorNames(ckpt, config, path);
    const source: _WeightSource = {
      plain: async (name, shape, quantizing) => {
        if (!ckpt.checkpoint.has(name)) throw new Error(`${path}: tensor "${name}" is missing`);
        const info = ckpt.checkpoint.info(name);
        if (info.shape.join() !== shape.join()) {
          throw new Error(`${path}: tensor "${name}" has shape [${info.shape}], expected [${shape}]`);
        }
        const values = await ckpt.checkpoint.readF32(name);
        if (!quantizing) assertFinite(values, `${path}: tensor "${name}"`);
        return Tensor.fromArray(gpu, values, shape, { class: "weights", label: name });
      },
      quantized: async (name, shape) => {
        if (!ckpt.isQuantized(name)) return null;
        const q = await ckpt.loadQuantized(gpu, name);
        if (q.shape.join() !== shape.join()) {
          throw new Error(`${path}: quantized "${name}" has shape [${q.shape}], expected [${shape}]`);
        }
        return q;
      },
    };
    return await _buildWeights(gpu, config, source, options);
  } finally {
    ckpt.close();
  }
}

/**
 * Makes every tensor {@linkcode loadModelWeights} makes for a checkpoint of `config`, zero-filled, without
 * reading one (e.g. on an accounting-only device, to size a run before downloading its weights).
 *
 * @param gpu The device.
 * @param config The configuration.
 * @param options LoRA settings, quantization, precision (`config` is ignored).
 * @returns The configuration, LoRA settings and (zero) weights.
 */
export async function shapeOnlyWeights(
  gpu: Gpu,
  config: LlamaConfig,
  options: LlamaLoadOptions,
): Promise<ModelWeights> {
  const source: _WeightSource = {
    plain: (name, shape) => Promise.resolve(Tensor.empty(gpu, shape, { class: "weights", label: name })),
    quantized: () => Promise.resolve(null),
  };
  return await _buildWeights(gpu, config, source, options);
}

async function _buildWeights(
  gpu: Gpu,
  config: LlamaConfig,
  source: _WeightSource,
  options: LlamaLoadOptions,
): Promise<ModelWeights> {
  const made: { destroy(): void }[] = [];
  try {
    const qat = options.qat ?? null;
    if (qat && options.lora !== null) {
      throw new Error(`Model "${config.architecture}": QAT layers take no LoRA adapters (pass lora: null)`);
    }
    const lora = options.lora === null ? null : resolveLoraConfig(options.lora);
    const c = config;
    const plain = async (name: string, shape: number[], quantizing = false): Promise<Tensor> => {
      const t = await source.plain(name, shape, quantizing);
      made.push(t);
      return t;
    };
    const quantized = async (name: string, shape: number[]): Promise<QuantizedTensor> => {
      const stored = await source.quantized(name, shape);
      if (stored) return stored;
      const w = await plain(name, shape, true);
      const q = await quantizeNF4(gpu, w, {
        blocksize: options.blocksize ?? 64,
        doubleQuant: options.doubleQuant ?? true,
        label: name,
      });
      w.destroy();
      return q;
    };
    const embed = await plain("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize]);
    const layers: DecoderLayer[] = [];
    const shapes = _projShapes(c);
    for (let l = 0; l < c.numLayers; l++) {
      const pre = `model.layers.${l}`;
      const inputNorm = await plain(`${pre}.input_layernorm.weight`, [c.hiddenSize]);
      const postNorm = await plain(`${pre}.post_attention_layernorm.weight`, [c.hiddenSize]);
      const qNorm = c.qkNorm ? await plain(`${pre}.self_attn.q_norm.weight`, [c.headDim]) : null;
      const kNorm = c.qkNorm ? await plain(`${pre}.self_attn.k_norm.weight`, [c.headDim]) : null;
      const proj: Projection[] = [];
      for (const [i, target] of LORA_TARGETS.entries()) {
        const path = loraModulePath(l, target);
        const [N, K] = shapes[i];
        if (qat) {
          const { w, a } = qat.bits;
          const weight = await plain(`${path}.weight`, [N, K]);
          const bias = c.qkvBias && i < 3 ? await plain(`${path}.bias`, [N]) : null;
          const p = new QatLinear(weight, { path, weightBits: w, inputBits: a, trainable: qat.train ?? false, bias });
          made.splice(made.length - (bias ? 2 : 1), bias ? 2 : 1, p); // the layer owns its weight and bias now
          proj.push(p);
          continue;
        }
        const weight = await quantized(`${path}.weight`, [N, K]);
        const bias = c.qkvBias && i < 3 ? await plain(`${path}.bias`, [N]) : null;
        const adapter = lora && lora.targetModules.includes(target)
          ? { ...lora, seed: deriveSeed(lora.seed, l, i) }
          : null;
        const p = new QLoRALinear(weight, { path, lora: adapter, bias, precision: options.precision });
        made.push(p);
        proj.push(p);
      }
      const weights = { inputNorm, postNorm, qNorm, kNorm, proj: proj as LayerProjections };
      const shape = { heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, eps: c.rmsNormEps };
      const layer = new DecoderLayer(gpu, l, weights, shape);
      const kvBits = qat?.bits.kv ?? 16;
      if (kvBits < 16) layer.kvQuant = (kv) => fakeQuantRows(gpu, kv, c.numKvHeads * c.headDim, kvBits);
      layers.push(layer);
    }
    const norm = await plain("model.norm.weight", [c.hiddenSize]);
    const head = c.tieWordEmbeddings ? embed : await plain("lm_head.weight", [c.vocabSize, c.hiddenSize]);
    const lmHead = vocabChunks(gpu, head, gpu.maxBindingBytes);
    made.push(...lmHead);
    if (lmHead[0] !== head && head !== embed) head.destroy();
    await gpu.sync();
    return { config, lora, embed, norm, lmHead, layers, qat: qat?.bits ?? null };
  } catch (e) {
    for (const t of made) t.destroy();
    throw e;
  }
}
