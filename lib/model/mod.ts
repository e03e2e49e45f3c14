/**
 * The Llama-family model: config parsing, batches and label targets, RoPE tables, `LlamaModel` (load, forward,
 * backward, KV-cached decoding) and loading a PEFT adapter into it.
 *
 * @example RoPE inverse frequencies
 * ```ts
 * import { ropeInvFreq } from "@qlora/webgpu/model";
 * import assert from "node:assert/strict";
 * const inv = ropeInvFreq({ headDim: 4, ropeTheta: 10000, ropeScaling: null });
 * assert.deepEqual([...inv], [1, Math.fround(0.01)]);
 * ```
 *
 * @module
 */

export * from "./batch.ts";
export * from "./config.ts";
export * from "./llama.ts";
export * from "./load_adapter.ts";
export * from "./rope.ts";
