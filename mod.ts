/**
 * qlora-webgpu: fine-tune Llama-family models with QLoRA on any WebGPU adapter, from Deno.
 *
 * NF4 quantization with double quantization (byte-compatible with bitsandbytes), a fused dequantize-matmul
 * with LoRA, gradient checkpointing, and a paged AdamW, all in WGSL.
 *
 * This module is the everyday API. Every part is also a sub-path with all of its exports: `@qlora/webgpu/gpu`,
 * `/quant`, `/kernels`, `/qlinear`, `/model`, `/optim`, `/io`, `/data`, `/train` (fine-tuning, generation, merge) and
 * `/testing` (a tiny model and tokenizer for tests and examples).
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

// The everyday values, and every type their signatures use (so these docs are complete on their own).

// GPU runtime, tensors, memory
export { formatBytes, parseBytes } from "./lib/bytes.ts";
export type { DType } from "./lib/dtype.ts";
export type { GpuStats } from "./lib/gpu/stats.ts";
export type { KernelProfile, Profile } from "./lib/gpu/profiler.ts";
export { Rng } from "./lib/random.ts";
export {
  type Binding,
  type Dispatch,
  Gpu,
  GpuError,
  type GpuFeatures,
  requestGpu,
  type RequestGpuOptions,
} from "./lib/gpu/device.ts";
export { type HostArray, Tensor, type TensorOptions } from "./lib/gpu/tensor.ts";
export {
  type BudgetBufferDescriptor,
  type BudgetReport,
  type Evictor,
  MemoryBudget,
  type MemoryClass,
  OutOfBudgetError,
  type PagingStats,
  type StagingBufferDescriptor,
} from "./lib/gpu/budget.ts";
export { PagedBuffer, Pager } from "./lib/gpu/pager.ts";

// NF4 quantization
export type { QuantType } from "./lib/quant/code_tables.ts";
export type { QuantizedTensor } from "./lib/quant/quantized_tensor.ts";
export { freeQuantized, quantizeNF4, type QuantizeNF4Options } from "./lib/kernels/nf4_quantize.ts";
export { dequantizeNF4, type DequantizeNF4Options } from "./lib/kernels/nf4_dequantize.ts";
export { type QuantErrorRow, quantizationErrors } from "./lib/kernels/quant_error.ts";
export type { HostQuantized, NestedQuantState, QuantState, SourceDType } from "./lib/quant/quant_state.ts";

// The QLoRA linear layer
export {
  type LoraAdapter,
  qlinearBackward,
  type QLinearBackwardOptions,
  qlinearForward,
  type QLinearForwardOptions,
  type QLinearForwardResult,
  type QLinearGradients,
} from "./lib/qlinear/functional.ts";
export {
  type AdapterTensors,
  type LoraLayer,
  type QLoRAAdapterOptions,
  QLoRALinear,
  type QLoRALinearForwardOptions,
  type QLoRALinearForwardResult,
  type QLoRALinearOptions,
  type QLoRASaved,
} from "./lib/qlinear/layer.ts";
export {
  LORA_TARGETS,
  type LoraConfig,
  type LoraTarget,
  type ResolvedLoraConfig,
  resolveLoraConfig,
} from "./lib/qlinear/lora_config.ts";
export type { Nf4LinearPath, Nf4Precision } from "./lib/kernels/qlinear_nf4.ts";

// The Llama model
export type { Batch } from "./lib/model/batch.ts";
export type { HeadWeights, HiddenLoss } from "./lib/model/lm_head.ts";
export type { Projection } from "./lib/model/decoder_layer.ts";
export type { QatBits } from "./lib/qlinear/qat_bits.ts";
export {
  type LlamaConfig,
  loadLlamaConfig,
  parseLlamaConfig,
  type RopeScaling,
  type StoredFloat,
} from "./lib/model/config.ts";
export {
  type BackwardOptions,
  type ForwardOptions,
  type ForwardResult,
  type LlamaLoadOptions,
  LlamaModel,
  type LossResult,
  NonFiniteLossError,
} from "./lib/model/llama.ts";
export { loadAdapterWeights } from "./lib/model/load_adapter.ts";
export { KvCache } from "./lib/model/kv_cache.ts";

// Optimizers
export { AdamW, type AdamWOptions, type AdamWState, type OptimParam, type StepOptions } from "./lib/optim/adamw.ts";
export { AdamW8bit, PagedAdamW, PagedAdamW8bit } from "./lib/optim/adamw_variants.ts";
export { lrAt, type LrSchedule, type LrScheduleKind } from "./lib/optim/schedule.ts";

// Files: safetensors, bitsandbytes 4-bit folders, PEFT adapters, tokenizer
export { SafetensorsFile } from "./lib/io/safetensors_reader.ts";
export { SafetensorsCheckpoint } from "./lib/io/safetensors_checkpoint.ts";
export { type SafetensorsTensorData, SafetensorsWriter, writeSafetensors } from "./lib/io/safetensors_writer.ts";
export { QuantizedCheckpoint } from "./lib/io/bnb_loader.ts";
export {
  quantizeFolder,
  type QuantizeFolderOptions,
  type QuantizeFolderReport,
  type QuantizeProgress,
} from "./lib/io/quantize_folder.ts";
export {
  type LinearShape,
  type LoraWeights,
  type PeftAdapter,
  type PeftLoraConfig,
  readPeftAdapter,
  writePeftAdapter,
} from "./lib/io/peft.ts";
export { type ChatMessage, type EncodeOptions, loadTokenizer, TextTokenizer } from "./lib/io/tokenizer.ts";
export type {
  SafetensorsDType,
  SafetensorsHeader,
  SafetensorsTensorInfo,
  SafetensorsTensorSpec,
} from "./lib/io/safetensors_header.ts";

// Data
export { type DataRecord, readJsonl } from "./lib/data/records.ts";

// Fine-tuning, generation, merge, and the flag tables of their CLIs
export { type Flag, flagHelp, type FlagTable, parseFlags } from "./lib/flags.ts";
export {
  finetune,
  type FinetuneHooks,
  type FinetuneResult,
  type ResolvedRun,
  resolveFinetuneRun,
} from "./lib/train/trainer.ts";
export {
  FINETUNE_FLAGS,
  FINETUNE_HELP,
  type FinetuneArgs,
  type FinetuneOptions,
  OPTIMIZER_NAMES,
  type OptimizerName,
  parseFinetuneArgs,
  SCHEDULE_NAMES,
  type ScheduleName,
} from "./lib/train/options.ts";
export { generate, type GenerateOptions, type GenerateResult } from "./lib/generate/generate.ts";
export { type CompleteOptions, type CompleteResult, TextGenerator } from "./lib/generate/text_generator.ts";
export { GENERATE_FLAGS, GENERATE_HELP, type GenerateCliOptions, parseGenerateArgs } from "./lib/generate/options.ts";
export {
  mergeAdapterFolder,
  type MergeFolderOptions,
  type MergeFolderReport,
  type MergeProgress,
} from "./lib/merge/merge_folder.ts";
export { MERGE_FLAGS, MERGE_HELP, type MergeCliOptions, parseMergeArgs } from "./lib/merge/options.ts";
export type { ProgressSink } from "./lib/train/progress.ts";
export type { StepMetrics } from "./lib/train/metrics.ts";
