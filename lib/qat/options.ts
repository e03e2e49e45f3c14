/**
 * The flags of `deno task qat` (LLM-QAT training), in the style of the finetune table: the paper's defaults
 * (AdamW lr 2e-5, cosine, no warmup, no weight decay) and `--resume`.
 *
 * @module
 */

import { resolve } from "../platform/path.ts";
import {
  choiceFlag,
  flagHelp,
  type FlagTable,
  flagValues,
  givenArgs,
  intFlag,
  numberFlag,
  readFlags,
  textFlag,
} from "../flags.ts";
import { FINETUNE_FLAGS, SCHEDULE_NAMES, type ScheduleName } from "../train/options.ts";
import { parseQatBits } from "../qlinear/qat_bits.ts";

/** Options of a `deno task qat` run. */
export interface QatOptions {
  /** The full-precision model folder (student's start and teacher). */
  model: string;
  /** JSONL of generated token ids (`deno task qat-data`). */
  data: string;
  /** Output folder: checkpoints, metrics, loss curve, the trained model. */
  out: string;
  /** Bits, e.g. `w4a8kv4`. */
  bits: string;
  /** Peak learning rate. */
  lr: number;
  /** Schedule. */
  schedule: ScheduleName;
  /** Warmup steps. */
  warmupSteps: number;
  /** AdamW weight decay. */
  weightDecay: number;
  /** Global gradient norm clip; 0 = off. */
  maxGradNorm: number;
  /** Sequences per micro-batch. */
  batchSize: number;
  /** Micro-batches per step. */
  gradAccum: number;
  /** Steps, or null for `epochs` passes. */
  steps: number | null;
  /** Passes over the data without `steps`. */
  epochs: number;
  /** Truncate longer sequences. */
  maxSeqLen: number | null;
  /** Data order seed. */
  seed: number;
  /** Recompute layers in the backward. */
  checkpointing: boolean;
  /** GPU memory cap, or null. */
  gpuMemory: number | null;
  /** Checkpoint every N steps; 0 = final only. */
  saveEvery: number;
  /** Replace an earlier run's files in `out`. */
  overwrite: boolean;
}

/** The flags of `deno task qat`, checked by the compiler against {@linkcode QatOptions}. */
export const QAT_FLAGS: FlagTable<QatOptions & { resume: string | null }> = {
  model: textFlag("DIR", "full-precision Hugging Face model folder (student start and frozen teacher)", {
    required: true,
    path: true,
  }),
  data: textFlag("FILE", "JSON Lines of generated token ids (deno task qat-data)", { required: true, path: true }),
  out: textFlag("DIR", "output folder: checkpoints, metrics.jsonl, loss.svg, the trained model", {
    required: true,
    path: true,
  }),
  bits: textFlag("WAKV", "bits of weights, activations, KV cache: w4a8kv4, w4a16kv16, w8a8kv8 (16 = off)", {
    default: "w4a8kv4",
  }),
  lr: numberFlag("X", "peak learning rate", { default: 2e-5, check: (x) => x >= 0, what: "a number ≥ 0" }),
  schedule: choiceFlag("S", "learning-rate schedule", SCHEDULE_NAMES, "cosine"),
  warmupSteps: intFlag("N", "linear warmup steps", { min: 0, default: 0 }),
  weightDecay: FINETUNE_FLAGS.weightDecay,
  maxGradNorm: numberFlag("X", "clip the global gradient norm; 0 = off", {
    default: 0,
    check: (x) => x >= 0,
    what: "a number ≥ 0",
  }),
  batchSize: FINETUNE_FLAGS.batchSize,
  gradAccum: intFlag("N", "micro-batches per optimizer step", { min: 1, default: 1 }),
  steps: FINETUNE_FLAGS.steps,
  epochs: FINETUNE_FLAGS.epochs,
  maxSeqLen: intFlag("N", "truncate longer sequences", { min: 2, default: null, unset: "the model's context" }),
  seed: intFlag("N", "seed of the data order", { min: 0, default: 42 }),
  checkpointing: FINETUNE_FLAGS.checkpointing,
  gpuMemory: FINETUNE_FLAGS.gpuMemory,
  saveEvery: FINETUNE_FLAGS.saveEvery,
  overwrite: FINETUNE_FLAGS.overwrite,
  resume: FINETUNE_FLAGS.resume,
};

/** The text of `deno task qat --help`. */
export const QAT_HELP: string = `LLM-QAT: quantization-aware training by distillation from the full-precision model.

Usage: deno task qat --model DIR --data gen.jsonl --out DIR [--bits w4a8kv4] [options]
       deno task qat --resume OUT [--gpu-memory B]   continue a killed run from its last checkpoint

Options:
${flagHelp(QAT_FLAGS)}`;

/** Result of {@linkcode parseQatArgs}: help, a run (options and flags with absolute paths), or a resume. */
export type QatArgs =
  | { kind: "help" }
  | { kind: "run"; options: QatOptions; args: string[] }
  | { kind: "resume"; out: string; overrides: string[] };

/**
 * Parses `deno task qat` flags.
 *
 * @param args The command-line arguments.
 * @returns Help, a run or a resume.
 * @throws {Error} Naming the flag for an unknown flag, a missing required one, or a bad value (bits included).
 *
 * @example
 * ```ts
 * import { parseQatArgs } from "@qlora/webgpu/qat";
 * import assert from "node:assert/strict";
 * const run = parseQatArgs(["--model", "m", "--data", "d.jsonl", "--out", "o", "--bits", "w8a8kv8"]);
 * assert.ok(run.kind === "run");
 * assert.equal(run.options.lr, 2e-5);
 * assert.throws(() => parseQatArgs(["--model", "m", "--data", "d", "--out", "o", "--bits", "w4"]), /w4a8kv4/);
 * ```
 */
export function parseQatArgs(args: readonly string[]): QatArgs {
  const raw = readFlags(QAT_FLAGS, args);
  if (raw.help) return { kind: "help" };
  const out = raw.values.resume as string | undefined;
  if (out !== undefined) {
    const other = raw.given.filter((k) => !["resume", "out", "gpu-memory"].includes(k));
    if (other.length > 0) throw new Error(`--resume continues with the saved options (not --${other.join(", --")})`);
    const mem = raw.values["gpu-memory"] as string | undefined;
    return { kind: "resume", out, overrides: mem ? ["--gpu-memory", mem] : [] };
  }
  const { resume: _, ...options } = flagValues(QAT_FLAGS, raw);
  parseQatBits(options.bits);
  return { kind: "run", options, args: givenArgs(QAT_FLAGS, raw, (p) => resolve(p)) };
}
