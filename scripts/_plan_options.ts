/**
 * The flags of `deno task plan`: its own (`--model`, `--config`, `--limits`, `--json`) and the memory-relevant
 * entries of the finetune table, taken from it (one source per flag).
 *
 * @module
 */

import { flagHelp, type FlagTable, switchFlag, textFlag } from "../lib/flags.ts";
import { GPU_LIMIT_PRESETS } from "../lib/gpu/accounting.ts";
import { FINETUNE_FLAGS, type FinetuneOptions } from "../lib/train/options.ts";

/** The finetune options a plan takes from the command line. */
type PlanRunFlags = Pick<
  FinetuneOptions,
  | "loraR"
  | "targetModules"
  | "maxSeqLen"
  | "batchSize"
  | "gradAccum"
  | "optimizer"
  | "checkpointing"
  | "f16"
  | "gpuMemory"
  | "pageSize"
>;

/** Options of a `deno task plan` run. */
export interface PlanCliOptions extends PlanRunFlags {
  /** Model folder (only its config.json is read), or null with `config`. */
  model: string | null;
  /** A config.json, or null with `model`. */
  config: string | null;
  /** A name of {@linkcode GPU_LIMIT_PRESETS}, or null: this machine's adapter. */
  limits: string | null;
  /** Print one JSON object instead of the table. */
  json: boolean;
}

const F = FINETUNE_FLAGS;

/** The flags of `deno task plan`. */
export const PLAN_FLAGS: FlagTable<PlanCliOptions> = {
  model: textFlag("DIR", "model folder; only its config.json is read", { path: true }),
  config: textFlag("FILE", "a config.json instead of --model", { path: true }),
  limits: textFlag("GPU", `plan for: ${Object.keys(GPU_LIMIT_PRESETS).join(", ")} (default: this adapter)`),
  json: switchFlag("print one JSON object"),
  loraR: F.loraR,
  targetModules: F.targetModules,
  maxSeqLen: F.maxSeqLen,
  batchSize: F.batchSize,
  gradAccum: F.gradAccum,
  optimizer: F.optimizer,
  checkpointing: F.checkpointing,
  f16: F.f16,
  gpuMemory: F.gpuMemory,
  pageSize: F.pageSize,
};

/** The text of `deno task plan --help`. */
export const PLAN_HELP: string = `Usage: deno task plan --model DIR | --config config.json [options]

Will it fit? Plans the GPU memory of a fine-tuning run without its weights: builds the model from its config and
runs two training steps on an accounting-only device, then prints the peak by class, whether it fits the memory
(--gpu-memory, else --limits' card), and the longest sequence (batch 1) and largest batch (at --max-seq-len)
that fit.

Options:
${flagHelp(PLAN_FLAGS)}`;
