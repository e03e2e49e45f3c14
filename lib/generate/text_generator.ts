/**
 * A model folder, its tokenizer and an optional PEFT adapter, ready to complete text prompts: what
 * `deno task generate` and the demo run.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import { loadTokenizer, type TextTokenizer } from "../io/tokenizer.ts";
import type { QatBits } from "../qlinear/qat_bits.ts";
import { LlamaModel } from "../model/llama.ts";
import { adapterLoraConfig, loadAdapterWeights } from "../model/load_adapter.ts";
import { generate, type GenerateOptions, type GenerateResult } from "./generate.ts";
import { TextStreamer } from "./text_streamer.ts";
import { storage } from "../platform/storage.ts";

/** Options of {@linkcode TextGenerator.complete}. */
export interface CompleteOptions extends Omit<GenerateOptions, "onToken" | "stopIds" | "cache"> {
  /** Render the prompt as a user turn with the chat template (default false). */
  chat?: boolean;
  /** Called with each printable piece of text as it is generated. */
  onText?: (text: string) => void;
}

/** What {@linkcode TextGenerator.complete} returns. */
export interface CompleteResult extends GenerateResult {
  /** The generated text (special tokens left out). */
  text: string;
  /** Tokens of the prompt. */
  promptTokens: number;
}

/**
 * Completes prompts with a model (NF4 weights) and an optional adapter.
 *
 * @example Greedy completion on the tiny model
 * ```ts
 * import { requestGpu, TextGenerator } from "@qlora/webgpu";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeTinyLlama(dir, { layers: 1 });
 * const g = await TextGenerator.load(await requestGpu(), dir);
 * const r = await g.complete("abc=", { maxNewTokens: 4 });
 * assert.equal(r.text, (await g.complete("abc=", { maxNewTokens: 4 })).text);
 * g.destroy();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class TextGenerator {
  /** The model. */
  readonly model: LlamaModel;
  /** The model folder's tokenizer. */
  readonly tokenizer: TextTokenizer;

  private constructor(model: LlamaModel, tokenizer: TextTokenizer) {
    this.model = model;
    this.tokenizer = tokenizer;
  }

  /**
   * Loads the tokenizer, the model (linear weights NF4) and the adapter.
   *
   * @param gpu The device.
   * @param modelDir The model folder.
   * @param adapterDir A PEFT adapter folder, or null.
   * @param fakeQuant LLM-QAT bits to run the dense model fake-quantized at (no adapter), or null: NF4.
   * @returns The generator.
   * @throws {Error} Naming the folder or file that is missing or does not fit.
   */
  static async load(
    gpu: Gpu,
    modelDir: string,
    adapterDir: string | null = null,
    fakeQuant: QatBits | null = null,
  ): Promise<TextGenerator> {
    const stat = await storage().stat(modelDir).catch(() => null);
    if (!stat?.isDirectory) throw new Error(`Model folder ${modelDir} does not exist`);
    if (adapterDir !== null && !(await storage().stat(adapterDir).catch(() => null))?.isDirectory) {
      throw new Error(`Adapter folder ${adapterDir} does not exist`);
    }
    const tokenizer = await loadTokenizer(modelDir);
    const lora = adapterDir === null ? null : { ...await adapterLoraConfig(adapterDir), dropout: 0 };
    if (fakeQuant && adapterDir !== null) throw new Error("Fake quantization runs the dense model: give no adapter");
    const qat = fakeQuant && { bits: fakeQuant };
    const model = await LlamaModel.load(gpu, modelDir, { lora, gradientCheckpointing: false, qat });
    try {
      if (adapterDir !== null) await loadAdapterWeights(model, adapterDir);
    } catch (e) {
      model.destroy();
      throw e;
    }
    return new TextGenerator(model, tokenizer);
  }

  /**
   * The token ids of a prompt, as training encodes prompts: with the tokenizer's special tokens (e.g. BOS), or
   * rendered as a user turn by the chat template (with the assistant header).
   *
   * @param prompt The prompt.
   * @param chat Use the chat template.
   * @returns The ids.
   */
  encodePrompt(prompt: string, chat = false): number[] {
    const tok = this.tokenizer;
    if (!chat) return tok.encode(prompt);
    return tok.encode(tok.applyChatTemplate([{ role: "user", content: prompt }], true), { addSpecialTokens: false });
  }

  /**
   * Completes a prompt, stopping at the tokenizer's stop ids, streaming text through `onText`.
   *
   * @param prompt The prompt.
   * @param options Token limit, sampling, chat template, streaming callback.
   * @returns The text and ids generated.
   */
  async complete(prompt: string, options: CompleteOptions = {}): Promise<CompleteResult> {
    const ids = this.encodePrompt(prompt, options.chat);
    const streamer = new TextStreamer(this.tokenizer);
    const onText = options.onText;
    const r = await generate(this.model, ids, {
      ...options,
      stopIds: this.tokenizer.stopIds,
      onToken: (id) => {
        const piece = streamer.push(id);
        if (piece && onText) onText(piece);
      },
    });
    const rest = streamer.flush();
    if (rest && onText) onText(rest);
    return { ...r, text: streamer.text, promptTokens: ids.length };
  }

  /** Frees the model's GPU memory. */
  destroy(): void {
    this.model.destroy();
  }
}
