/**
 * Loading a Llama-family model's weights onto the GPU for `LlamaModel.load`: the configuration, every decoder
 * layer (norms, Qwen3's q/k norms, the seven projections as `QLoRALinear` layers, quantized to NF4 on the GPU
 * unless the folder is bitsandbytes 4-bit, or as LLM-QAT's dense `QatLinear` layers), the final norm and `lm_head` in vocabulary chunks.
 * The frozen non-quantized tensors (embedding, norms, `lm_head`) are held as the checkpoint stores them (bf16 and
 * f16 as two values per u32 word, read as f32 by the kernels, as QLoRA keeps them): half the bytes of f32.
 *
 * @module
 */

import { assertFinite, DTYPE_BYTES } from "../dtype.ts";
import type { Gpu } from "../gpu/device.ts";
import { type HostArray, Tensor } from "../gpu/tensor.ts";
import { type ArenaSpec, TensorArena } from "../gpu/tensor_arena.ts";
import { QuantizedCheckpoint } from "../io/bnb_loader.ts";
import { QLoRALinear } from "../qlinear/layer.ts";
import { QatLinear } from "../qlinear/qat_linear.ts";
import type { QatBits } from "../qlinear/qat_bits.ts";
import { fakeQuantRows } from "../kernels/fake_quant.ts";
import { quantizeNF4 } from "../kernels/nf4_quantize.ts";
import { deriveSeed } from "../random.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";
import { type LlamaConfig, loadLlamaConfig, parseLlamaConfig, type StoredFloat } from "./config.ts";
import { safetensorsToDType } from "../io/safetensors_header.ts";
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
  /** `model.embed_tokens.weight` `[V, H]`, in row chunks when past the adapter's `maxBufferSize`. */
  embed: Tensor[];
  /** `model.norm.weight` `[H]`. */
  norm: Tensor;
  /** `lm_head` (or the tied embedding) in vocabulary chunks that fit a storage binding. */
  lmHead: Tensor[];
  /** The decoder layers. */
  layers: DecoderLayer[];
  /** LLM-QAT's bits when the projections are `QatLinear` layers, else null. */
  qat: QatBits | null;
  /** Where the LoRA adapters and their gradients live (the layers' `a`, `b`, `gradA`, `gradB` are views), or null. */
  adapters: AdapterArenas | null;
}

/**
 * The LoRA tensors of a model packed in two arenas, in the order layer, projection, then A before B (so one
 * projection's A and B are adjacent, and the optimizer covers them in one dispatch per state page).
 */
export interface AdapterArenas {
  /** Every A and B (memory class `weights`). */
  params: TensorArena;
  /** Their gradients, in the same order (class `activations`): cleared in one call per buffer. */
  grads: TensorArena;
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

/** Labels of the buffers of the model's two LoRA arenas (the memory plan names its classes by them). */
export const LORA_ARENA_LABELS = { params: "LoRA adapters", grads: "LoRA gradients" } as const;

/** The adapter arenas of every targeted projection (see {@linkcode AdapterArenas}). */
function _adapterArenas(gpu: Gpu, c: LlamaConfig, lora: ResolvedLoraConfig): AdapterArenas {
  const shapes = _projShapes(c);
  const specs: ArenaSpec[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    for (const [i, target] of LORA_TARGETS.entries()) {
      if (!lora.targetModules.includes(target)) continue;
      const path = loraModulePath(l, target);
      const [N, K] = shapes[i];
      specs.push({ shape: [lora.r, K], label: `${path}.lora_A` }, { shape: [N, lora.r], label: `${path}.lora_B` });
    }
  }
  const params = new TensorArena(gpu, specs, { class: "weights", label: LORA_ARENA_LABELS.params });
  try {
    const grads = new TensorArena(gpu, specs.map((s) => ({ ...s, label: `${s.label}.grad` })), {
      class: "activations",
      label: LORA_ARENA_LABELS.grads,
    });
    return { params, grads };
  } catch (e) {
    params.destroy();
    throw e;
  }
}

/** Where {@linkcode _buildWeights} gets tensors: a checkpoint, or nothing but shapes. */
interface _WeightSource {
  /**
   * A frozen tensor of `shape` (checked against the source) on the host: f32, or with `asStored` in the source's
   * float type when {@linkcode _heldAs} allows; `data` null: zeros. Its values are checked finite unless
   * `quantizing` (the NF4 quantizer checks them on the GPU).
   */
  plain(name: string, shape: number[], how: { asStored: boolean; quantizing: boolean }): Promise<_Held>;
  /** The tensor as stored quantized, or null when it is to be quantized on load. */
  quantized(name: string, shape: number[]): Promise<QuantizedTensor | null>;
}

/** A frozen tensor's values on the host, in the type it is held in. */
interface _Held {
  dtype: StoredFloat;
  data: HostArray | null;
}

/** The type a frozen tensor of `shape` stored as `stored` is held in: 16-bit only when every row is whole u32 words. */
function _heldAs(stored: StoredFloat, shape: number[]): StoredFloat {
  return shape[shape.length - 1] % 2 === 0 ? stored : "f32";
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
      plain: async (name, shape, { asStored, quantizing }) => {
        if (!ckpt.checkpoint.has(name)) throw new Error(`${path}: tensor "${name}" is missing`);
        const info = ckpt.checkpoint.info(name);
        if (info.shape.join() !== shape.join()) {
          throw new Error(`${path}: tensor "${name}" has shape [${info.shape}], expected [${shape}]`);
        }
        const what = `${path}: tensor "${name}"`;
        const dtype = safetensorsToDType(info.dtype);
        if (asStored && (dtype === "bf16" || dtype === "f16") && _heldAs(dtype, shape) === dtype) {
          const bytes = await ckpt.checkpoint.read(name);
          assertFinite(bytes, what, dtype);
          return { dtype, data: new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2) };
        }
        const values = await ckpt.checkpoint.readF32(name);
        if (!quantizing) assertFinite(values, what);
        return { dtype: "f32", data: values };
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
    plain: (_name, shape, { asStored }) =>
      Promise.resolve({ dtype: asStored ? _heldAs(config.torchDtype, shape) : "f32", data: null }),
    quantized: () => Promise.resolve(null),
  };
  return await _buildWeights(gpu, config, source, options);
}

/**
 * Uploads `[R, C]` `held` as tensors of whole rows, each within the adapter's `maxBufferSize` (one tensor when it
 * fits; chunks labelled `name rows a:b`). Rows per chunk are counted as for f32, whatever the held type.
 */
function _rowChunks(gpu: Gpu, name: string, shape: number[], held: _Held): Tensor[] {
  const [R, C] = shape;
  const max = gpu.limits.maxBufferSize;
  const per = R * C * 4 <= max ? R : Math.floor(max / (C * 4));
  if (per === 0) throw new Error(`Tensor "${name}": a row of ${C} f32 is past maxBufferSize (${max} bytes)`);
  const out: Tensor[] = [];
  for (let r0 = 0; r0 < R; r0 += per) {
    const n = Math.min(per, R - r0);
    const label = per === R ? name : `${name} rows ${r0}:${r0 + n}`;
    const t = Tensor.empty(gpu, [n, C], { dtype: held.dtype, class: "weights", label });
    out.push(t);
    if (held.data) {
      const b = DTYPE_BYTES[held.dtype];
      t.write(new Uint8Array(held.data.buffer, held.data.byteOffset + r0 * C * b, n * C * b));
    }
  }
  return out;
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
    const chunks = async (name: string, shape: number[], asStored = false): Promise<Tensor[]> => {
      const held = _rowChunks(gpu, name, shape, await source.plain(name, shape, { asStored, quantizing: false }));
      made.push(...held);
      return held;
    };
    const plain = async (name: string, shape: number[], asStored = false, quantizing = false): Promise<Tensor> => {
      const held = await source.plain(name, shape, { asStored, quantizing });
      const t = held.data
        ? Tensor.fromArray(gpu, held.data, shape, { dtype: held.dtype, class: "weights", label: name })
        : Tensor.empty(gpu, shape, { dtype: held.dtype, class: "weights", label: name });
      made.push(t);
      return t;
    };
    const quantized = async (name: string, shape: number[]): Promise<QuantizedTensor> => {
      const stored = await source.quantized(name, shape);
      if (stored) return stored;
      const w = await plain(name, shape, false, true);
      const q = await quantizeNF4(gpu, w, {
        blocksize: options.blocksize ?? 64,
        doubleQuant: options.doubleQuant ?? true,
        label: name,
      });
      w.destroy();
      return q;
    };
    // The frozen tensors the kernels read as stored; projections, biases and QAT weights are f32.
    const stored = (name: string, shape: number[]) => plain(name, shape, true);
    const embed = await chunks("model.embed_tokens.weight", [c.vocabSize, c.hiddenSize], true);
    const layers: DecoderLayer[] = [];
    const shapes = _projShapes(c);
    const adapters = lora && _adapterArenas(gpu, c, lora);
    if (adapters) made.push(adapters.params, adapters.grads);
    let view = 0; // the next adapter's index in the arenas
    for (let l = 0; l < c.numLayers; l++) {
      const pre = `model.layers.${l}`;
      const inputNorm = await stored(`${pre}.input_layernorm.weight`, [c.hiddenSize]);
      const postNorm = await stored(`${pre}.post_attention_layernorm.weight`, [c.hiddenSize]);
      const qNorm = c.qkNorm ? await stored(`${pre}.self_attn.q_norm.weight`, [c.headDim]) : null;
      const kNorm = c.qkNorm ? await stored(`${pre}.self_attn.k_norm.weight`, [c.headDim]) : null;
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
        const [a, b] = adapter ? adapters!.params.tensors.slice(view, view + 2) : [];
        const [gradA, gradB] = adapter ? adapters!.grads.tensors.slice(view, view + 2) : [];
        if (adapter) view += 2;
        const adapterTensors = adapter ? { a, b, gradA, gradB } : undefined;
        const p = new QLoRALinear(weight, { path, lora: adapter, bias, precision: options.precision, adapterTensors });
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
    const norm = await stored("model.norm.weight", [c.hiddenSize]);
    const tied = c.tieWordEmbeddings;
    const head = tied ? embed : await chunks("lm_head.weight", [c.vocabSize, c.hiddenSize], true);
    const lmHead: Tensor[] = [];
    for (const h of head) {
      const parts = vocabChunks(gpu, h, gpu.maxBindingBytes);
      lmHead.push(...parts);
      if (parts[0] !== h) {
        made.push(...parts);
        if (!tied) h.destroy();
      }
    }
    await gpu.sync();
    return { config, lora, embed, norm, lmHead, layers, qat: qat?.bits ?? null, adapters };
  } catch (e) {
    for (const t of made) t.destroy();
    throw e;
  }
}
