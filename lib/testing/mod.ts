/**
 * Fixtures for tests, demos and examples: a seeded tiny Llama (or Qwen3) checkpoint writer and a tiny tokenizer,
 * written as Hugging Face folders so every loader takes them.
 *
 * @example The tiny model's config
 * ```ts
 * import { tinyLlamaConfig } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * assert.equal(tinyLlamaConfig({ layers: 3 }).num_hidden_layers, 3);
 * ```
 *
 * @module
 */

export * from "./tiny_llama.ts";
export * from "./tiny_tokenizer.ts";
