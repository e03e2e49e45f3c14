/**
 * Text generation with a KV cache: the prompt runs through the model once (prefill), then one token at a time
 * (decode), each picked greedily or by temperature/top-p sampling, until a stop id or the token limit.
 *
 * @module
 */

import type { LlamaModel } from "../model/llama.ts";
import type { KvCache } from "../model/kv_cache.ts";
import { Rng } from "../random.ts";
import { sampleToken } from "./sampling.ts";

/** Options of {@linkcode generate}. */
export interface GenerateOptions {
  /** Most tokens to generate (default 128; fewer when the context runs out). */
  maxNewTokens?: number;
  /** Sampling temperature; 0 (the default) is greedy. */
  temperature?: number;
  /** Top-p nucleus mass (default 1: all tokens). */
  topP?: number;
  /** Seed of the sampling generator (default 0). */
  seed?: number;
  /** Ids that end the generation (left out of the result), e.g. the tokenizer's `stopIds`. */
  stopIds?: readonly number[];
  /** Called with each generated token as soon as it is picked (stop ids excluded). */
  onToken?: (id: number) => void;
  /** A cache of one sequence to reuse (reset first; capacity ≥ prompt + new tokens); default: a new one. */
  cache?: KvCache;
}

/** What {@linkcode generate} returns. */
export interface GenerateResult {
  /** The generated ids, without the stop id. */
  ids: number[];
  /** `stop`: a stop id came; `length`: `maxNewTokens` (or the context) ran out. */
  finishReason: "stop" | "length";
}

/**
 * Continues a prompt: prefill, then decode steps with the KV cache, picking each token with
 * {@linkcode sampleToken} (greedy at temperature 0, the default, so the output is deterministic).
 *
 * @param model The model (with or without LoRA adapters).
 * @param promptIds The prompt's token ids (at least one).
 * @param options Token limit, sampling, stop ids, streaming callback.
 * @returns The generated ids and why generation ended.
 * @throws {Error} For an empty prompt or one that fills the model's context.
 *
 * @example Greedy continuation of the tiny model
 * ```ts
 * import { generate, LlamaModel, requestGpu } from "@qlora/webgpu";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeTinyLlama(dir, { layers: 1 });
 * const model = await LlamaModel.load(await requestGpu(), dir, { lora: null });
 * const a = await generate(model, [1, 100, 101], { maxNewTokens: 3 });
 * const b = await generate(model, [1, 100, 101], { maxNewTokens: 3 });
 * assert.deepEqual(a, b);
 * assert.ok(a.ids.length <= 3);
 * model.destroy();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function generate(
  model: LlamaModel,
  promptIds: readonly number[],
  options: GenerateOptions = {},
): Promise<GenerateResult> {
  const { temperature = 0, topP = 1, seed = 0, stopIds = [], onToken } = options;
  const context = model.config.maxPositionEmbeddings;
  if (promptIds.length === 0) throw new Error("generate: the prompt has no tokens");
  if (promptIds.length >= context) {
    throw new Error(`generate: the prompt has ${promptIds.length} tokens; the model's context is ${context}`);
  }
  // The last generated token never needs its own cache row.
  const maxNew = Math.min(options.maxNewTokens ?? 128, context - promptIds.length);
  const ids: number[] = [];
  if (maxNew <= 0) return { ids, finishReason: "length" };
  const cache = options.cache ?? model.createKvCache(1, promptIds.length + maxNew - 1);
  cache.reset();
  const rng = new Rng(seed);
  const stops = new Set(stopIds);
  try {
    let logits = await model.prefill(cache, {
      batchSize: 1,
      seqLen: promptIds.length,
      inputIds: Int32Array.from(promptIds),
    });
    for (;;) {
      const id = sampleToken(logits, rng, { temperature, topP });
      if (stops.has(id)) return { ids, finishReason: "stop" };
      ids.push(id);
      onToken?.(id);
      if (ids.length >= maxNew) return { ids, finishReason: "length" };
      logits = await model.decodeStep(cache, new Int32Array([id]));
    }
  } finally {
    if (!options.cache) cache.destroy();
  }
}
