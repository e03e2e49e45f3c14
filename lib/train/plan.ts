/**
 * "Will it fit?": the GPU memory of a fine-tuning run, before any weights are downloaded. The plan runs the
 * run's own code — model construction from the configuration (the tensors loading makes, quantized on the GPU),
 * the optimizer, and two training steps (forward, backward, gradient clipping, optimizer step) of full-length
 * batches — on an accounting-only device (`accountingGpu`), under the same budget limit and adapter limits. So
 * the plan's peak is the peak the run reports as `gpu_bytes`, and whatever the code allocates (a pool, a new
 * scratch buffer) is in it without a formula to keep in step.
 *
 * @module
 */

import { accountingGpu, type GpuLimits } from "../gpu/accounting.ts";
import { type MemoryClass, OutOfBudgetError } from "../gpu/budget.ts";
import { GpuError } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { LlamaConfig } from "../model/config.ts";
import { LlamaModel } from "../model/llama.ts";
import { LORA_ARENA_LABELS } from "../model/model_weights.ts";
import { createOptimizer } from "./_optimizer.ts";
import type { FinetuneOptions } from "./options.ts";

/** What a plan needs: the model's configuration, the run's memory-relevant options, the adapter's limits. */
export interface PlanOptions extends
  Pick<
    FinetuneOptions,
    | "loraR"
    | "loraAlpha"
    | "loraDropout"
    | "targetModules"
    | "batchSize"
    | "gradAccum"
    | "optimizer"
    | "checkpointing"
    | "f16"
    | "pageSize"
    | "gpuMemory"
    | "lr"
    | "weightDecay"
    | "maxGradNorm"
    | "seed"
  > {
  /** The model. */
  config: LlamaConfig;
  /** Tokens per sequence (the longest batch of the run). */
  maxSeqLen: number;
  /** Buffer and binding limits of the adapter to plan for. */
  limits: Omit<GpuLimits, "memory">;
}

/** A memory plan: the peak of a training step, by class, and whether it fits. */
export interface MemoryPlan {
  /** Highest accounted GPU bytes of a training step (what `metrics.jsonl` reports as `gpu_bytes`). */
  peakBytes: number;
  /** The budget limit planned against, or null when none was given (then only the adapter's buffer limits). */
  limitBytes: number | null;
  /** Whether the run fits: no allocation passed the limit or the adapter's buffer size. */
  fits: boolean;
  /** Why it does not fit (the allocation that failed), else null. */
  error: string | null;
  /** GPU bytes by class at the peak (see {@linkcode planClassOf}). */
  classes: Record<string, number>;
  /** The highest bytes of each class during a step, each at its own moment (e.g. the activation peak). */
  classPeaks: Record<string, number>;
  /** Highest accounted GPU bytes while the model is built (NF4 quantization holds one f32 weight at a time). */
  loadPeakBytes: number;
  /** Host bytes: the paged optimizer state's host copy and the staging buffers. */
  hostBytes: number;
  /** Host bytes of the paged optimizer state alone (0 when it is resident). */
  pagedStateBytes: number;
}

/**
 * The plan's class of a GPU buffer, from its label (finer than the budget's four classes); buffers it does not
 * recognise keep their budget class, so a class the code adds later shows up by itself.
 *
 * @param label The buffer label.
 * @param cls Its budget class.
 * @returns The class name.
 *
 * @example
 * ```ts
 * import { planClassOf } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * assert.equal(planClassOf("model.layers.0.mlp.up_proj.weight.packed", "weights"), "nf4 codes");
 * assert.equal(planClassOf("LoRA gradients 0", "activations"), "lora gradients");
 * assert.equal(planClassOf("something new", "scratch"), "scratch");
 * ```
 */
export function planClassOf(label: string, cls: MemoryClass): string {
  if (cls === "weights") {
    if (label.endsWith(".packed")) return "nf4 codes";
    if (label.endsWith(".absmax codes") || label.endsWith(".absmax")) return "nf4 absmax";
    if (label.endsWith(".tables")) return "nf4 double-quant constants";
    if (label.startsWith(`${LORA_ARENA_LABELS.params} `)) return "lora parameters";
    // Embedding row chunks are "… rows a:b"; tied lm_head's vocabulary chunks copied from them end in "[a:b]".
    if (label.startsWith("lm_head.weight") || /^model\.embed_tokens\.weight.*\[\d+:\d+\]$/.test(label)) {
      return "lm_head";
    }
    if (label.startsWith("model.embed_tokens.weight")) return "embeddings";
    if (label.endsWith("norm.weight") || label.endsWith(".bias")) return "norms and biases";
    return "other frozen";
  }
  if (label.startsWith(`${LORA_ARENA_LABELS.grads} `)) return "lora gradients";
  if (cls === "optimizer") return / of "/.test(label) ? "optimizer state (paged in)" : "optimizer state (resident)";
  if (cls === "activations" && /^(logits|lm_head |dlogits|cross-entropy)/.test(label)) {
    return "activations: lm_head and cross-entropy";
  }
  if (cls === "activations") return "activations: layers";
  return cls;
}

/**
 * Plans a fine-tuning run's GPU memory (see the module doc).
 *
 * @param options The model, the run's options, the adapter's limits.
 * @returns The peak, its classes, host memory, and whether it fits.
 *
 * @example A SmolLM2-135M run at r 8, 64 tokens: it fits 1 GiB, not 128 MiB
 * ```ts
 * import { FINETUNE_DEFAULTS, planMemory } from "@qlora/webgpu/train";
 * import { parseLlamaConfig } from "@qlora/webgpu/model";
 * import assert from "node:assert/strict";
 * const config = parseLlamaConfig(JSON.parse(await Deno.readTextFile("tests/fixtures/configs/SmolLM2-135M.json")));
 * const limits = { maxBufferSize: 2 ** 32, maxStorageBufferBindingSize: 2 ** 31 };
 * const base = { ...FINETUNE_DEFAULTS, loraR: 8, config, maxSeqLen: 64, limits, gradAccum: 1 };
 * const plan = await planMemory({ ...base, gpuMemory: 2 ** 30 });
 * assert.ok(plan.fits && plan.peakBytes < 2 ** 30);
 * assert.ok(plan.classes["nf4 codes"] > 40e6);
 * const small = await planMemory({ ...base, gpuMemory: 2 ** 27 });
 * assert.ok(!small.fits && /budget exceeded/.test(small.error!));
 * ```
 */
export async function planMemory(options: PlanOptions): Promise<MemoryPlan> {
  const { gpu, ledger } = accountingGpu({
    limits: options.limits,
    gpuMemory: options.gpuMemory ?? undefined,
    keyOf: planClassOf,
  });
  const limitBytes = options.gpuMemory;
  let model: LlamaModel | null = null;
  let optimizer: ReturnType<typeof createOptimizer> | null = null;
  let peakBytes = 0;
  let classes: Record<string, number> = {};
  let classPeaks: Record<string, number> = {};
  let pagedStateBytes = 0;
  let loadPeakBytes = 0;
  const result = (error: string | null): MemoryPlan => ({
    peakBytes,
    limitBytes,
    fits: error === null,
    error,
    classes: Object.fromEntries(Object.entries(classes).filter(([k]) => k !== "staging")),
    classPeaks: Object.fromEntries(Object.entries(classPeaks).filter(([k]) => k !== "staging")),
    loadPeakBytes,
    hostBytes: pagedStateBytes + ledger.stagingPeak,
    pagedStateBytes,
  });
  try {
    const lora = {
      r: options.loraR,
      alpha: options.loraAlpha,
      dropout: options.loraDropout,
      targetModules: options.targetModules,
      seed: options.seed,
    };
    model = await LlamaModel.fromConfig(gpu, options.config, {
      lora,
      gradientCheckpointing: options.checkpointing,
      precision: options.f16 ? "f16" : "f32",
    });
    loadPeakBytes = gpu.budget.report().peak;
    const opt = createOptimizer(gpu, model.loraLayers(), options);
    optimizer = opt;
    if (opt.pager) pagedStateBytes = opt.pageCount * opt.pageSize;
    const { batchSize: B, maxSeqLen: T } = options;
    const ids = new Int32Array(B * T).fill(1);
    const batch = { batchSize: B, seqLen: T, inputIds: ids, labels: ids };
    // The trainer's step (lib/train/trainer.ts): two of them, since the second starts with the first's pages.
    for (let step = 1; step <= 2; step++) {
      gpu.budget.resetPeak();
      ledger.resetPeak();
      model.zeroGrad();
      const stats: Tensor[] = [];
      for (let i = 0; i < Math.min(options.gradAccum, 2); i++) {
        stats.push(
          ...(await model.forwardBackward(batch, { gradScale: 1 / (B * T), seed: i, deferLoss: true })).stats!,
        );
      }
      await opt.step({ lr: options.lr, maxGradNorm: options.maxGradNorm > 0 ? options.maxGradNorm : Infinity });
      await gpu.sync();
      for (const t of stats) t.destroy();
      const peak = gpu.budget.report().peak;
      if (peak >= peakBytes) [peakBytes, classes, classPeaks] = [peak, ledger.atPeak(), ledger.maxByKey()];
    }
    return result(null);
  } catch (e) {
    if (!(e instanceof OutOfBudgetError || e instanceof GpuError)) throw e;
    const r = gpu.budget.report();
    if (r.peak > peakBytes) [peakBytes, classes] = [r.peak, ledger.atPeak()];
    if (model === null) loadPeakBytes = r.peak;
    return result((e as Error).message);
  } finally {
    optimizer?.destroy();
    model?.destroy();
  }
}

/**
 * The largest value of `key` (sequence length, at the options' batch size; or batch size) at which the run still
 * fits, by bisection over {@linkcode planMemory}; sequence lengths are searched in steps of `step`.
 *
 * @param options The plan's options (the value of `key` in them is ignored).
 * @param key `maxSeqLen` or `batchSize`.
 * @param max The largest value to try (e.g. the model's context length).
 * @param step Granularity of the answer (default 1).
 * @returns The largest fitting value (a multiple of `step`, or `max`), or 0 when not even `step` fits.
 *
 * @example
 * ```ts
 * import { FINETUNE_DEFAULTS, largestFitting } from "@qlora/webgpu/train";
 * import { parseLlamaConfig } from "@qlora/webgpu/model";
 * import assert from "node:assert/strict";
 * const config = parseLlamaConfig(JSON.parse(await Deno.readTextFile("tests/fixtures/configs/SmolLM2-135M.json")));
 * const limits = { maxBufferSize: 2 ** 32, maxStorageBufferBindingSize: 2 ** 31 };
 * const base = { ...FINETUNE_DEFAULTS, loraR: 8, config, maxSeqLen: 64, limits, gradAccum: 1, gpuMemory: 2 ** 29 };
 * const b = await largestFitting(base, "batchSize", 64);
 * assert.ok(b >= 1 && b < 64);
 * ```
 */
export async function largestFitting(
  options: PlanOptions,
  key: "maxSeqLen" | "batchSize",
  max: number,
  step = 1,
): Promise<number> {
  const fits = async (units: number) => (await planMemory({ ...options, [key]: Math.min(max, units * step) })).fits;
  const top = Math.ceil(max / step);
  let lo = 0; // in units of `step`: lo fits (0: nothing known to), hi does not
  let hi = 1;
  while (hi <= top && await fits(hi)) [lo, hi] = [hi, hi * 2];
  if (hi > top) {
    if (lo === top) return max;
    hi = top + 1;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await fits(mid)) lo = mid;
    else hi = mid;
  }
  return Math.min(max, lo * step);
}
