/**
 * The options of `deno task finetune`, with the QLoRA reference scripts' defaults: one flag table, from which the
 * parser, the defaults, the `--help` text and the README's flag list come.
 *
 * @module
 */

import { resolve } from "../platform/path.ts";
import {
  bytesFlag,
  choiceFlag,
  flagDefaults,
  flagHelp,
  flagName,
  type FlagTable,
  flagValues,
  givenArgs,
  intFlag,
  listFlag,
  numberFlag,
  readFlags,
  switchFlag,
  textFlag,
} from "../flags.ts";
import { LORA_TARGETS, type LoraTarget } from "../qlinear/lora_config.ts";

/** Optimizers the trainer offers. */
export const OPTIMIZER_NAMES = ["adamw", "paged_adamw_32bit", "paged_adamw_8bit"] as const;
/** One of {@linkcode OPTIMIZER_NAMES}. */
export type OptimizerName = typeof OPTIMIZER_NAMES[number];
/** Learning-rate schedules the trainer offers; each warms up linearly over `warmupSteps` first. */
export const SCHEDULE_NAMES = ["constant", "linear", "cosine"] as const;
/** One of {@linkcode SCHEDULE_NAMES}. */
export type ScheduleName = typeof SCHEDULE_NAMES[number];

/** Everything a fine-tuning run needs to know. */
export interface FinetuneOptions {
  /** Hugging Face model folder (config.json, safetensors, tokenizer.json). */
  model: string;
  /** JSON Lines data file. */
  data: string;
  /** Output folder (checkpoints, final adapter, metrics.jsonl, loss.svg). */
  out: string;
  /** LoRA rank. */
  loraR: number;
  /** LoRA alpha (scale alpha/r). */
  loraAlpha: number;
  /** Dropout on the adapter input. */
  loraDropout: number;
  /** Adapted projections (default: all linear layers of the decoder). */
  targetModules: LoraTarget[];
  /** Peak learning rate. */
  lr: number;
  /** Schedule after the warmup. */
  schedule: ScheduleName;
  /** Warmup steps; null: 3% of the total steps, rounded up. */
  warmupSteps: number | null;
  /** Clip the global gradient L2 norm to this (0: no clipping). */
  maxGradNorm: number;
  /** AdamW decoupled weight decay. */
  weightDecay: number;
  /** Sequences per micro-batch. */
  batchSize: number;
  /** Micro-batches per optimizer step. */
  gradAccum: number;
  /** Optimizer steps; null: `epochs` passes over the data. */
  steps: number | null;
  /** Passes over the data when `steps` is not given. */
  epochs: number;
  /** Longest example in tokens (longer ones are truncated and counted); null: the model's context length. */
  maxSeqLen: number | null;
  /** Seed of LoRA init, dropout and data order. */
  seed: number;
  /** Shuffle with length grouping (false: file order, no grouping). */
  shuffle: boolean;
  /** Gradient checkpointing. */
  checkpointing: boolean;
  /** Cap on accounted GPU bytes; null: the adapter's limits. */
  gpuMemory: number | null;
  /** Page size of pageable memory, bytes; null: the pager's default. */
  pageSize: number | null;
  /** The optimizer. */
  optimizer: OptimizerName;
  /** Save a checkpoint every this many steps (0: only the final adapter). */
  saveEvery: number;
  /** Start from this PEFT adapter folder; null: fresh LoRA init. */
  initAdapter: string | null;
  /** f16 arithmetic in the frozen-weight products (needs `shader-f16`; an error without it). Default f32. */
  f16: boolean;
  /** Profile the steps: per-kernel table on the log, `OUT/profile.json`. */
  profile: boolean;
  /** Replace what an earlier run left in `out` (without it a fresh run refuses a non-empty `out`). */
  overwrite: boolean;
}

const nonNegative = { check: (x: number) => x >= 0, what: "a number ≥ 0" };

/**
 * The flags of `deno task finetune`: the run's options (defaults of the QLoRA reference scripts) and `--resume`.
 * `FlagTable` makes the compiler check it against {@linkcode FinetuneOptions}, option by option.
 */
export const FINETUNE_FLAGS: FlagTable<FinetuneOptions & { resume: string | null }> = {
  model: textFlag("DIR", "Hugging Face model folder (config.json, safetensors, tokenizer.json)", {
    required: true,
    path: true,
  }),
  data: textFlag("FILE", "JSON Lines data file", { required: true, path: true }),
  out: textFlag("DIR", "output folder: checkpoints, final adapter, metrics.jsonl, loss.svg", {
    required: true,
    path: true,
  }),
  loraR: intFlag("N", "LoRA rank", { min: 1, default: 64 }),
  loraAlpha: numberFlag("X", "LoRA alpha; scale alpha/r", {
    default: 16,
    check: (x) => x > 0,
    what: "a positive number",
  }),
  loraDropout: numberFlag("P", "dropout on the adapter input", {
    default: 0.05,
    check: (x) => x >= 0 && x < 1,
    what: "a number in [0, 1)",
  }),
  targetModules: listFlag<LoraTarget>("LIST", "comma-separated projections", {
    default: LORA_TARGETS,
    all: "all-linear",
    empty: "at least one module",
    check: (t, flag) => {
      if (!(LORA_TARGETS as readonly string[]).includes(t)) {
        throw new Error(`--${flag}: "${t}" is not a linear layer of the decoder (${LORA_TARGETS.join(", ")})`);
      }
    },
  }),
  lr: numberFlag("X", "peak learning rate", { default: 2e-4, ...nonNegative }),
  schedule: choiceFlag("S", "schedule after the warmup", SCHEDULE_NAMES, "constant"),
  warmupSteps: intFlag("N", "linear warmup steps", { min: 0, default: null, unset: "3% of the steps, rounded up" }),
  maxGradNorm: numberFlag("X", "clip the global gradient norm; 0 = off", { default: 0.3, ...nonNegative }),
  weightDecay: numberFlag("X", "AdamW weight decay", { default: 0, ...nonNegative }),
  batchSize: intFlag("N", "sequences per micro-batch", { min: 1, default: 1 }),
  gradAccum: intFlag("N", "micro-batches per optimizer step", { min: 1, default: 16 }),
  steps: intFlag("N", "optimizer steps", { min: 1, default: null, unset: "--epochs passes over the data" }),
  epochs: intFlag("N", "passes over the data when --steps is not given", { min: 1, default: 1 }),
  maxSeqLen: intFlag("N", "truncate longer examples, reported", {
    min: 2,
    default: null,
    unset: "the model's context",
  }),
  seed: intFlag("N", "seed of LoRA init, dropout and data order", { min: 0, default: 42 }),
  shuffle: switchFlag("file order, no length grouping", { negated: true }),
  checkpointing: switchFlag("keep all activations instead of recomputing layers", { negated: true }),
  gpuMemory: bytesFlag("BYTES", "cap accounted GPU memory: 1048576, 991904B, 512MiB, 6GiB", "adapter limit"),
  pageSize: bytesFlag("BYTES", "page size of pageable memory", "pager default"),
  optimizer: choiceFlag("NAME", "optimizer", OPTIMIZER_NAMES, "paged_adamw_32bit"),
  saveEvery: intFlag("N", "checkpoint every N steps into OUT/checkpoint-N; 0 = final only", { min: 0, default: 250 }),
  initAdapter: textFlag("DIR", "start from an existing PEFT adapter (its r, alpha, targets)", { path: true }),
  f16: switchFlag("f16 arithmetic in the NF4 products; needs shader-f16 (default f32)"),
  profile: switchFlag("profile the steps: per-kernel GPU time and host counts per step, OUT/profile.json"),
  overwrite: switchFlag("replace an earlier run's files in OUT (a fresh run refuses a non-empty OUT)"),
  resume: textFlag("OUT", "continue the run in OUT from its last checkpoint, with its saved options"),
};

const { resume: _, ...defaults } = flagDefaults(FINETUNE_FLAGS);

/** Defaults of the QLoRA reference scripts (`model`, `data`, `out` have none), from {@linkcode FINETUNE_FLAGS}. */
export const FINETUNE_DEFAULTS: Readonly<Omit<FinetuneOptions, "model" | "data" | "out">> = defaults as Omit<
  FinetuneOptions,
  "model" | "data" | "out"
>;

/** The text of `deno task finetune --help`. */
export const FINETUNE_HELP: string = `Fine-tune a Llama-family model with QLoRA on any WebGPU adapter.

Usage: deno task finetune --model DIR --data FILE.jsonl --out DIR [options]
       deno task finetune --resume OUT [--gpu-memory B] [--page-size B]
                                                continue a killed run from its last checkpoint

Data: JSON Lines of {"text": ...} (loss on every token), {"prompt": ..., "completion": ...} (loss on the
completion) or {"messages": [{"role": ..., "content": ...}, ...]} (chat template; loss on assistant turns).

Options (defaults: the QLoRA reference scripts; on --resume only --gpu-memory and --page-size may change):
${flagHelp(FINETUNE_FLAGS)}`;

/**
 * Result of {@linkcode parseFinetuneArgs}: help, a run (its options, and its flags with absolute paths to save in
 * checkpoints), or a resume (the folder, and the flags to append to the saved ones).
 */
export type FinetuneArgs =
  | { kind: "help" }
  | { kind: "run"; options: FinetuneOptions; args: string[] }
  | { kind: "resume"; out: string; overrides: string[] };

/** Options that may change on resume: they move memory, not results. */
const RESUME_OVERRIDES = ["gpuMemory", "pageSize"] as const;

/**
 * Parses `deno task finetune` flags.
 *
 * @param args The command-line arguments (`Deno.args`).
 * @returns `help` for `--help`; `resume` for `--resume OUT`; else `run` with the options, defaults filled in.
 * @throws {Error} Naming the flag for an unknown flag, a missing required flag, or a bad value.
 *
 * @example
 * ```ts
 * import { parseFinetuneArgs } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const run = parseFinetuneArgs(["--model", "m", "--data", "d.jsonl", "--out", "o", "--lora-r", "8", "--gpu-memory", "512MiB"]);
 * assert.ok(run.kind === "run");
 * const o = run.options;
 * assert.equal(o.loraR, 8);
 * assert.equal(o.gpuMemory, 512 * 2 ** 20);
 * assert.equal(o.gradAccum, 16);
 * assert.throws(() => parseFinetuneArgs(["--model", "m", "--data", "d", "--out", "o", "--lr", "fast"]), /--lr "fast"/);
 * assert.throws(() => parseFinetuneArgs(["--model", "m", "--data", "d", "--out", "o", "--lr", "0x10"]), /--lr "0x10"/);
 * const init = ["--model", "m", "--data", "d", "--out", "o", "--init-adapter", "a"];
 * assert.throws(() => parseFinetuneArgs([...init, "--lora-r", "8"]), /--init-adapter .* drop --lora-r/);
 * ```
 */
export function parseFinetuneArgs(args: readonly string[]): FinetuneArgs {
  const raw = readFlags(FINETUNE_FLAGS, args);
  if (raw.help) return { kind: "help" };
  const s = (k: string) => raw.values[k] as string | undefined;
  const out = s("resume");
  if (out !== undefined) {
    if (s("out") !== undefined && s("out") !== out) {
      throw new Error(`--resume "${out}" and --out "${s("out")}" name different folders`);
    }
    const names = RESUME_OVERRIDES.map((k) => flagName(k, FINETUNE_FLAGS[k]));
    const other = raw.given.filter((k) => !["resume", "out", ...names].includes(k));
    if (other.length > 0) {
      throw new Error(
        `--resume continues with the run's saved options; only --${names.join(" and --")} may be given ` +
          `(not --${other.join(", --")})`,
      );
    }
    RESUME_OVERRIDES.forEach((k, i) => FINETUNE_FLAGS[k].value(s(names[i]), names[i]));
    return { kind: "resume", out, overrides: names.flatMap((k) => s(k) ? [`--${k}`, s(k)!] : []) };
  }
  // The adapter's own settings win; given explicitly as well, one of them would be silently ignored.
  const fromAdapter = (["loraR", "loraAlpha", "targetModules"] as const).map((k) => flagName(k, FINETUNE_FLAGS[k]));
  const conflict = fromAdapter.filter((k) => raw.given.includes(k));
  if (s("init-adapter") !== undefined && conflict.length > 0) {
    throw new Error(
      `--init-adapter takes the adapter's rank, alpha and target modules from its adapter_config.json; ` +
        `drop --${conflict.join(" and --")}`,
    );
  }
  const { resume: _, ...options } = flagValues(FINETUNE_FLAGS, raw);
  const saved = givenArgs(FINETUNE_FLAGS, raw, (p) => resolve(p));
  return { kind: "run", options, args: saved };
}

/**
 * Total optimizer steps and warmup steps of a run: `steps`, else `epochs × stepsPerEpoch`; warmup `warmupSteps`,
 * else 3% of the total rounded up (transformers' `warmup_ratio = 0.03`).
 *
 * @param options The run's options.
 * @param stepsPerEpoch Optimizer steps in one pass over the data.
 * @returns Total and warmup steps.
 *
 * @example
 * ```ts
 * import { FINETUNE_DEFAULTS, runLength } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * assert.deepEqual(runLength({ ...FINETUNE_DEFAULTS, epochs: 2 }, 50), { totalSteps: 100, warmupSteps: 3 });
 * assert.deepEqual(runLength({ ...FINETUNE_DEFAULTS, steps: 10, warmupSteps: 0 }, 50), { totalSteps: 10, warmupSteps: 0 });
 * ```
 */
export function runLength(
  options: Pick<FinetuneOptions, "steps" | "epochs" | "warmupSteps">,
  stepsPerEpoch: number,
): { totalSteps: number; warmupSteps: number } {
  const totalSteps = options.steps ?? options.epochs * stepsPerEpoch;
  return { totalSteps, warmupSteps: options.warmupSteps ?? Math.ceil(0.03 * totalSteps) };
}
