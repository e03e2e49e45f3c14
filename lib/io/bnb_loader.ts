/**
 * Loading a bitsandbytes 4-bit checkpoint (written by {@linkcode quantizeFolder} or by transformers'
 * `save_pretrained` of a `load_in_4bit` model) by tensor name: quantized weights become
 * {@linkcode QuantizedTensor}s on the GPU, every other tensor a plain {@linkcode Tensor}.
 *
 * @module
 */

import { join } from "../platform/path.ts";
import type { Gpu } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import type { HostQuantized } from "../quant/quant_state.ts";
import { uploadQuantized } from "../kernels/nf4_quantize.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";
import { _exists } from "./_file.ts";
import { bnbPlainTensors, bnbQuantizedWeights, readBnbWeight } from "./bnb_format.ts";
import { readJsonFile } from "./json_file.ts";
import { SafetensorsCheckpoint } from "./safetensors_checkpoint.ts";
import { safetensorsToDType } from "./safetensors_header.ts";

/**
 * An open quantized (or plain) checkpoint folder. Close it with {@linkcode QuantizedCheckpoint.close}.
 *
 * @example Load the tiny model after quantizing it
 * ```ts
 * import { QuantizedCheckpoint, quantizeFolder, requestGpu } from "@qlora/webgpu";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const input = await Deno.makeTempDir();
 * await writeTinyLlama(input, { layers: 1 });
 * await quantizeFolder(gpu, { input, output: `${input}-nf4` });
 * using ckpt = await QuantizedCheckpoint.open(`${input}-nf4`);
 * const q = await ckpt.loadQuantized(gpu, "model.layers.0.mlp.up_proj.weight");
 * assert.deepEqual(q.shape, [172, 64]);
 * assert.ok(ckpt.plainNames().includes("model.norm.weight"));
 * ```
 */
export class QuantizedCheckpoint {
  /** The safetensors files. */
  readonly checkpoint: SafetensorsCheckpoint;
  /** `config.json` of the folder, or `null` when there is none. */
  readonly config: Record<string, unknown> | null;
  #quantized: string[];
  #plain: string[];

  private constructor(checkpoint: SafetensorsCheckpoint, config: Record<string, unknown> | null) {
    this.checkpoint = checkpoint;
    this.config = config;
    const names = checkpoint.names();
    this.#quantized = bnbQuantizedWeights(names);
    this.#plain = bnbPlainTensors(names);
  }

  /**
   * Opens a checkpoint folder (or file; see {@linkcode SafetensorsCheckpoint.open}).
   *
   * @param path The folder.
   * @returns The open checkpoint.
   */
  static async open(path: string): Promise<QuantizedCheckpoint> {
    const ckpt = await SafetensorsCheckpoint.open(path);
    try {
      const configPath = join(ckpt.path, "config.json");
      const config = await _exists(configPath) ? await readJsonFile(configPath) : null;
      return new QuantizedCheckpoint(ckpt, config);
    } catch (e) {
      ckpt.close();
      throw e;
    }
  }

  /** Names of the quantized weights (`X.weight`). */
  quantizedNames(): string[] {
    return [...this.#quantized];
  }

  /** Names of the other tensors (norms, embeddings, `lm_head`, unquantized layers). */
  plainNames(): string[] {
    return [...this.#plain];
  }

  /** Whether `name` is a quantized weight. */
  isQuantized(name: string): boolean {
    return this.#quantized.includes(name);
  }

  /**
   * Reads a quantized weight into host form.
   *
   * @param name The weight (`X.weight`).
   * @returns Packed codes and state.
   * @throws {Error} If it is not a quantized weight of the checkpoint, or its tensors do not fit.
   */
  async readHost(name: string): Promise<HostQuantized> {
    if (!this.isQuantized(name)) throw new Error(`${this.checkpoint.path}: "${name}" is not a 4-bit quantized weight`);
    return await readBnbWeight(this.checkpoint, name);
  }

  /**
   * Loads a quantized weight onto the GPU (buffers accounted as `weights`).
   *
   * @param gpu The device.
   * @param name The weight (`X.weight`).
   * @returns The GPU tensor, labelled with `name`.
   */
  async loadQuantized(gpu: Gpu, name: string): Promise<QuantizedTensor> {
    return uploadQuantized(gpu, await this.readHost(name), name);
  }

  /**
   * Loads a plain tensor onto the GPU in its stored dtype (F32, F16, BF16, U8, I32, U32), as `weights`.
   *
   * @param gpu The device.
   * @param name The tensor.
   * @returns The tensor, labelled with `name`.
   * @throws {Error} If the dtype has no toolkit equivalent (e.g. I64), naming the tensor.
   */
  async loadTensor(gpu: Gpu, name: string): Promise<Tensor> {
    const info = this.checkpoint.info(name);
    const dtype = safetensorsToDType(info.dtype);
    if (!dtype) {
      throw new Error(`${this.checkpoint.fileOf(name).path}: tensor "${name}" has unsupported dtype ${info.dtype}`);
    }
    const bytes = await this.checkpoint.read(name);
    return Tensor.fromArray(gpu, bytes, info.shape, { dtype, class: "weights", label: name });
  }

  /** Closes the files. */
  close(): void {
    this.checkpoint.close();
  }

  /** Closes the files (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
