/**
 * Files: safetensors (validating reader, streaming atomic writer, sharded checkpoints), bitsandbytes 4-bit folders,
 * PEFT adapters, the tokenizer and chat template, and atomic writes.
 *
 * @example PEFT tensor names
 * ```ts
 * import { peftTensorName } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * assert.equal(peftTensorName("model.layers.3.mlp.down_proj", "B"), "base_model.model.model.layers.3.mlp.down_proj.lora_B.weight");
 * ```
 *
 * @module
 */

export * from "./atomic_write.ts";
export * from "./bnb_format.ts";
export * from "./bnb_loader.ts";
export * from "./chat_template.ts";
export * from "./json_file.ts";
export * from "./peft.ts";
export * from "./quantize_folder.ts";
export * from "./safetensors_checkpoint.ts";
export * from "./safetensors_header.ts";
export * from "./safetensors_reader.ts";
export * from "./safetensors_writer.ts";
export * from "./tokenizer.ts";
