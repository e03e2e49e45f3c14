/**
 * `deno task plan --model DIR | --config config.json [options]`: will this fine-tuning run fit? Prints the GPU
 * memory plan of the run (see `--help`), or with `--json` one object with `peak_bytes`, `fits`, `limit_bytes`,
 * `classes` (name → bytes) and the rest.
 *
 * @module
 */

import { join } from "node:path";
import { formatBytes } from "../lib/bytes.ts";
import { GPU_LIMIT_PRESETS, type GpuLimits } from "../lib/gpu/accounting.ts";
import { parseFlags } from "../lib/flags.ts";
import { parseLlamaConfig } from "../lib/model/config.ts";
import { FINETUNE_DEFAULTS } from "../lib/train/options.ts";
import { largestFitting, planMemory } from "../lib/train/plan.ts";
import { PLAN_FLAGS, PLAN_HELP } from "./_plan_options.ts";

/** This machine's adapter limits, or WebGPU's defaults without one; memory unknown. */
async function adapterLimits(): Promise<GpuLimits> {
  const a = await navigator.gpu?.requestAdapter();
  const l = a?.limits ?? { maxBufferSize: 2 ** 28, maxStorageBufferBindingSize: 2 ** 27 };
  return { maxBufferSize: l.maxBufferSize, maxStorageBufferBindingSize: l.maxStorageBufferBindingSize, memory: null };
}

try {
  const o = parseFlags(PLAN_FLAGS, Deno.args);
  if (o === null) {
    console.log(PLAN_HELP);
    Deno.exit(0);
  }
  if ((o.model === null) === (o.config === null)) throw new Error("Give --model DIR or --config FILE (one of them)");
  const configPath = o.config ?? join(o.model!, "config.json");
  const config = parseLlamaConfig(JSON.parse(await Deno.readTextFile(configPath)), configPath);
  let limits: GpuLimits;
  if (o.limits === null) limits = await adapterLimits();
  else {
    const preset = GPU_LIMIT_PRESETS[o.limits];
    if (!preset) {
      throw new Error(`--limits "${o.limits}": not a known GPU (${Object.keys(GPU_LIMIT_PRESETS).join(", ")})`);
    }
    limits = preset;
  }
  const { model: _m, config: _c, limits: _l, json, ...run } = o;
  const maxSeqLen = o.maxSeqLen ?? config.maxPositionEmbeddings;
  const gpuMemory = o.gpuMemory ?? limits.memory;
  const options = { ...FINETUNE_DEFAULTS, ...run, config, maxSeqLen, limits, gpuMemory };
  const plan = await planMemory(options);
  const longest = await largestFitting({ ...options, batchSize: 1 }, "maxSeqLen", config.maxPositionEmbeddings, 64);
  const largestBatch = await largestFitting(options, "batchSize", 4096);
  if (json) {
    console.log(JSON.stringify({
      peak_bytes: plan.peakBytes,
      load_peak_bytes: plan.loadPeakBytes,
      fits: plan.fits,
      limit_bytes: plan.limitBytes,
      classes: plan.classes,
      class_peaks: plan.classPeaks,
      host_bytes: plan.hostBytes,
      paged_state_bytes: plan.pagedStateBytes,
      error: plan.error,
      seq_len: maxSeqLen,
      batch_size: o.batchSize,
      max_seq_len_at_batch_1: longest,
      max_batch_at_seq_len: largestBatch,
      max_buffer_bytes: limits.maxBufferSize,
      max_binding_bytes: limits.maxStorageBufferBindingSize,
    }));
  } else {
    const lines = Object.entries(plan.classes).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]);
    console.log(
      `${configPath}: r ${o.loraR} on ${o.targetModules.join(",")}, ${o.batchSize} × ${maxSeqLen} tokens, ` +
        `${o.optimizer}, ${o.checkpointing ? "" : "no "}gradient checkpointing`,
    );
    console.log(`  ${"at the peak".padEnd(40)} ${"bytes".padStart(12)}   (class's own peak)`);
    for (const [k, v] of lines) {
      console.log(`  ${k.padEnd(40)} ${formatBytes(v).padStart(12)}   (${formatBytes(plan.classPeaks[k] ?? v)})`);
    }
    console.log(`  ${"peak".padEnd(40)} ${formatBytes(plan.peakBytes).padStart(12)}`);
    console.log(`  ${"peak while loading".padEnd(40)} ${formatBytes(plan.loadPeakBytes).padStart(12)}`);
    if (plan.pagedStateBytes > 0) {
      console.log(
        `  host: optimizer state ${formatBytes(plan.pagedStateBytes)} (pages), all host ${formatBytes(plan.hostBytes)}`,
      );
    }
    const limit = plan.limitBytes === null ? "no memory limit given" : formatBytes(plan.limitBytes);
    console.log(
      `${plan.fits ? "Fits" : "Does not fit"} (${limit}; buffers ≤ ${formatBytes(limits.maxBufferSize)})` +
        (plan.error ? `: ${plan.error}` : ""),
    );
    console.log(`Longest sequence at batch 1: ${longest}; largest batch at ${maxSeqLen} tokens: ${largestBatch}`);
  }
} catch (e) {
  console.error(`Error: ${(e as Error).message}`);
  Deno.exit(1);
}
