/**
 * The options of `deno task finetune`, with the QLoRA reference scripts' defaults, parsed from command-line flags.
 *
 * @module
 */

import { resolve } from "node:path";
import { _parseFlags } from "../_flags.ts";
import { LORA_TARGETS, type LoraTarget } from "../model/lora_config.ts";

/** Optimizers the trainer offers. */
export type OptimizerName = "adamw" | "paged_adamw_32bit" | "paged_adamw_8bit";
/** Learning-rate schedules the trainer offers; each warms up linearly over `warmupSteps` first. */
export type ScheduleName = "constant" | "linear" | "cosine";

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
}

/** Defaults of the QLoRA reference scripts (`model`, `data`, `out` have none). */
export const FINETUNE_DEFAULTS: Readonly<Omit<FinetuneOptions, "model" | "data" | "out">> = {
  loraR: 64,
  loraAlpha: 16,
  loraDropout: 0.05,
  targetModules: [...LORA_TARGETS],
  lr: 2e-4,
  schedule: "constant",
  warmupSteps: null,
  maxGradNorm: 0.3,
  weightDecay: 0,
  batchSize: 1,
  gradAccum: 16,
  steps: null,
  epochs: 1,
  maxSeqLen: null,
  seed: 42,
  shuffle: true,
  checkpointing: true,
  gpuMemory: null,
  pageSize: null,
  optimizer: "paged_adamw_32bit",
  saveEvery: 250,
  initAdapter: null,
  f16: false,
};

/** The text of `deno task finetune --help`. */
export const FINETUNE_HELP = `Fine-tune a Llama-family model with QLoRA on any WebGPU adapter.

Usage: deno task finetune --model DIR --data FILE.jsonl --out DIR [options]
       deno task finetune --resume OUT [--gpu-memory B] [--page-size B]
                                                continue a killed run from its last checkpoint

Data: JSON Lines of {"text": ...} (loss on every token), {"prompt": ..., "completion": ...} (loss on the
completion) or {"messages": [{"role": ..., "content": ...}, ...]} (chat template; loss on assistant turns).

Options (defaults: the QLoRA reference scripts):
  --lora-r N               LoRA rank (64)
  --lora-alpha X           LoRA alpha; scale alpha/r (16)
  --lora-dropout P         dropout on the adapter input (0.05)
  --target-modules LIST    comma-separated projections (all linear: ${LORA_TARGETS.join(",")})
  --lr X                   peak learning rate (2e-4)
  --schedule S             constant | linear | cosine, after the warmup (constant)
  --warmup-steps N         linear warmup steps (3% of the steps, rounded up)
  --max-grad-norm X        clip the global gradient norm; 0 = off (0.3)
  --weight-decay X         AdamW weight decay (0)
  --batch-size N           sequences per micro-batch (1)
  --grad-accum N           micro-batches per optimizer step (16)
  --steps N                optimizer steps (default: --epochs passes over the data)
  --epochs N               passes over the data when --steps is not given (1)
  --max-seq-len N          truncate longer examples, reported (the model's context length)
  --seed N                 seed of LoRA init, dropout and data order (42)
  --no-shuffle             file order, no length grouping
  --no-checkpointing       keep all activations instead of recomputing layers
  --gpu-memory BYTES       cap accounted GPU memory: 1048576, 991904B, 512MiB, 6GiB (adapter limit)
  --page-size BYTES        page size of pageable memory (pager default)
  --optimizer NAME         adamw | paged_adamw_32bit | paged_adamw_8bit (paged_adamw_32bit)
  --save-every N           checkpoint every N steps into OUT/checkpoint-N; 0 = final only (250)
  --init-adapter DIR       start from an existing PEFT adapter (its r, alpha, targets)
  --resume OUT             continue the run in OUT from its last complete checkpoint, with the
                           options saved there (only --gpu-memory and --page-size may change)
  --f16                    f16 arithmetic in the NF4 products; needs shader-f16 (default f32)
  -h, --help               this text
`;

/**
 * Result of {@linkcode parseFinetuneArgs}: help, a run (its options, and its flags with absolute paths to save in
 * checkpoints), or a resume (the folder, and the flags to append to the saved ones).
 */
export type FinetuneArgs =
  | { kind: "help" }
  | { kind: "run"; options: FinetuneOptions; args: string[] }
  | { kind: "resume"; out: string; overrides: string[] };

/** Flags that may change on resume: they move memory, not results. */
const RESUME_OVERRIDES = ["gpu-memory", "page-size"];
/** Flags holding paths, saved absolute so a run resumes from any working folder. */
const PATH_FLAGS = ["model", "data", "out", "init-adapter"];

const FINETUNE_FLAGS: Record<string, "string" | "boolean"> = {
  model: "string",
  data: "string",
  out: "string",
  "lora-r": "string",
  "lora-alpha": "string",
  "lora-dropout": "string",
  "target-modules": "string",
  lr: "string",
  schedule: "string",
  "warmup-steps": "string",
  "max-grad-norm": "string",
  "weight-decay": "string",
  "batch-size": "string",
  "grad-accum": "string",
  steps: "string",
  epochs: "string",
  "max-seq-len": "string",
  seed: "string",
  "no-shuffle": "boolean",
  "no-checkpointing": "boolean",
  "gpu-memory": "string",
  "page-size": "string",
  optimizer: "string",
  "save-every": "string",
  "init-adapter": "string",
  resume: "string",
  f16: "boolean",
};

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
 * ```
 */
export function parseFinetuneArgs(args: readonly string[]): FinetuneArgs {
  const flags = _parseFlags(args, FINETUNE_FLAGS);
  if (flags.help) return { kind: "help" };
  const d = FINETUNE_DEFAULTS;
  const { str: s, num, int, bytes, oneOf, given } = flags;
  const optInt = (k: string, min: number) => s(k) === undefined ? null : int(k, 0, min);
  const out = s("resume");
  if (out !== undefined) {
    if (s("out") !== undefined && s("out") !== out) {
      throw new Error(`--resume "${out}" and --out "${s("out")}" name different folders`);
    }
    const other = given.filter((k) => !["resume", "out", ...RESUME_OVERRIDES].includes(k));
    if (other.length > 0) {
      throw new Error(
        `--resume continues with the run's saved options; only --${RESUME_OVERRIDES.join(" and --")} may be given ` +
          `(not --${other.join(", --")})`,
      );
    }
    RESUME_OVERRIDES.forEach(bytes);
    return { kind: "resume", out, overrides: RESUME_OVERRIDES.flatMap((k) => s(k) ? [`--${k}`, s(k)!] : []) };
  }
  for (const k of ["model", "data", "out"]) {
    if (s(k) === undefined) throw new Error(`--${k} is required (see --help)`);
  }
  const targets = s("target-modules");
  const targetModules = targets === undefined || targets === "all-linear"
    ? [...d.targetModules]
    : targets.split(",").map((t) => t.trim()).filter((t) => t !== "") as LoraTarget[];
  for (const t of targetModules) {
    if (!LORA_TARGETS.includes(t)) {
      throw new Error(`--target-modules: "${t}" is not a linear layer of the decoder (${LORA_TARGETS.join(", ")})`);
    }
  }
  if (targetModules.length === 0) throw new Error(`--target-modules "${targets}": expected at least one module`);
  const options: FinetuneOptions = {
    model: s("model")!,
    data: s("data")!,
    out: s("out")!,
    loraR: int("lora-r", d.loraR, 1),
    loraAlpha: num("lora-alpha", d.loraAlpha, (x) => x > 0, "a positive number"),
    loraDropout: num("lora-dropout", d.loraDropout, (x) => x >= 0 && x < 1, "a number in [0, 1)"),
    targetModules,
    lr: num("lr", d.lr, (x) => x >= 0, "a number ≥ 0"),
    schedule: oneOf<ScheduleName>("schedule", d.schedule, ["constant", "linear", "cosine"]),
    warmupSteps: optInt("warmup-steps", 0),
    maxGradNorm: num("max-grad-norm", d.maxGradNorm, (x) => x >= 0, "a number ≥ 0"),
    weightDecay: num("weight-decay", d.weightDecay, (x) => x >= 0, "a number ≥ 0"),
    batchSize: int("batch-size", d.batchSize, 1),
    gradAccum: int("grad-accum", d.gradAccum, 1),
    steps: optInt("steps", 1),
    epochs: int("epochs", d.epochs, 1),
    maxSeqLen: optInt("max-seq-len", 2),
    seed: int("seed", d.seed, 0),
    shuffle: !flags.bool("no-shuffle"),
    checkpointing: !flags.bool("no-checkpointing"),
    gpuMemory: bytes("gpu-memory"),
    pageSize: bytes("page-size"),
    optimizer: oneOf<OptimizerName>("optimizer", d.optimizer, ["adamw", "paged_adamw_32bit", "paged_adamw_8bit"]),
    saveEvery: int("save-every", d.saveEvery, 0),
    initAdapter: s("init-adapter") ?? null,
    f16: flags.bool("f16"),
  };
  const saved = given.flatMap((k) =>
    FINETUNE_FLAGS[k] === "boolean" ? [`--${k}`] : [`--${k}`, PATH_FLAGS.includes(k) ? resolve(s(k)!) : s(k)!]
  );
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
 * import { FINETUNE_DEFAULTS, runLength } from "@qlora/webgpu";
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
