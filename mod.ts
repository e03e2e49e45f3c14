/**
 * qlora-webgpu: fine-tune Llama-family models with QLoRA on any WebGPU adapter, from Deno.
 *
 * NF4 quantization with double quantization (byte-compatible with bitsandbytes), a fused dequantize-matmul
 * with LoRA, gradient checkpointing, and a paged AdamW, all in WGSL.
 *
 * @example Acquire a GPU
 * ```ts
 * import { requestGpu } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * assert.ok(gpu.adapterName.length > 0);
 * ```
 *
 * @module
 */

// GPU runtime, tensors, memory
export * from "./lib/bytes.ts";
export * from "./lib/dtype.ts";
export * from "./lib/gpu/device.ts";
export * from "./lib/gpu/tensor.ts";
export * from "./lib/gpu/budget.ts";
export * from "./lib/gpu/pager.ts";
export * from "./lib/random.ts";

// Quantization (bitsandbytes.functional)
export * from "./lib/quant/code_tables.ts";
export * from "./lib/quant_error.ts";
export * from "./lib/quant/quant_state.ts";
export * from "./lib/quant/quantized_tensor.ts";
export * from "./lib/quant/reference.ts";

// Kernels: one wrapper per WGSL file
export * from "./lib/kernels/adamw_8bit.ts";
export * from "./lib/kernels/adamw_f32.ts";
export * from "./lib/kernels/attention.ts";
export * from "./lib/kernels/clip_grad_norm.ts";
export * from "./lib/kernels/cross_entropy.ts";
export * from "./lib/kernels/dropout.ts";
export * from "./lib/kernels/embedding.ts";
export * from "./lib/kernels/matmul_f32.ts";
export * from "./lib/kernels/nf4_dequantize.ts";
export * from "./lib/kernels/nf4_quantize.ts";
export * from "./lib/kernels/qlinear_nf4.ts";
export * from "./lib/kernels/residual_add.ts";
export * from "./lib/kernels/rms_norm.ts";
export * from "./lib/kernels/rope.ts";
export * from "./lib/kernels/swiglu.ts";

// The QLoRA linear layer
export * from "./lib/qlinear/functional.ts";
export * from "./lib/qlinear/layer.ts";

// The Llama model
export * from "./lib/model/batch.ts";
export * from "./lib/model/config.ts";
export * from "./lib/model/llama.ts";
export * from "./lib/model/load_adapter.ts";
export * from "./lib/model/lora_config.ts";
export * from "./lib/model/rope.ts";
export * from "./lib/model/tiny_llama.ts";
export * from "./lib/model/tiny_tokenizer.ts";

// Optimizers
export * from "./lib/optim/adamw.ts";
export * from "./lib/optim/schedule.ts";
export * from "./lib/optim/state_file.ts";

// Files: safetensors, bitsandbytes 4-bit folders, PEFT adapters, tokenizer
export * from "./lib/io/atomic_write.ts";
export * from "./lib/io/bnb_format.ts";
export * from "./lib/io/bnb_loader.ts";
export * from "./lib/io/json_file.ts";
export * from "./lib/io/peft.ts";
export * from "./lib/io/quantize_folder.ts";
export * from "./lib/io/safetensors_checkpoint.ts";
export * from "./lib/io/safetensors_header.ts";
export * from "./lib/io/safetensors_reader.ts";
export * from "./lib/io/safetensors_writer.ts";
export * from "./lib/io/chat_template.ts";
export * from "./lib/io/tokenizer.ts";

// Data, command-line flags, training, generation, merge
export * from "./lib/data/assistant_spans.ts";
export * from "./lib/data/eval.ts";
export * from "./lib/data/examples.ts";
export * from "./lib/data/inspect.ts";
export * from "./lib/data/loader.ts";
export * from "./lib/data/records.ts";
export * from "./lib/flags.ts";
export * from "./lib/generate/generate.ts";
export * from "./lib/generate/options.ts";
export * from "./lib/generate/text_generator.ts";
export * from "./lib/generate/text_streamer.ts";
export * from "./lib/merge/merge_folder.ts";
export * from "./lib/merge/merge_lora.ts";
export * from "./lib/merge/options.ts";
export * from "./lib/sampling.ts";
export * from "./lib/train/checkpoint.ts";
export * from "./lib/train/run_folder.ts";
export * from "./lib/train/loss_svg.ts";
export * from "./lib/train/metrics.ts";
export * from "./lib/train/options.ts";
export * from "./lib/train/progress.ts";
export * from "./lib/train/trainer.ts";
