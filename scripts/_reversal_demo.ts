/**
 * The end-to-end QLoRA demo of `deno task demo` (not part of the library), with nothing to download: write the tiny seeded Llama checkpoint, measure its
 * held-out exact-match accuracy on three-letter reversal (`"abc="` → `"cba"`), fine-tune LoRA adapters on the
 * NF4 base with the trainer, and measure again.
 *
 * @module
 */

import { join } from "../lib/platform/path.ts";
import type { Gpu } from "../lib/gpu/device.ts";
import { readJsonl } from "../lib/data/records.ts";
import { type EvalPair, type EvalResult, exactMatchAccuracy } from "../lib/data/eval.ts";
import { type FlagTable, intFlag, switchFlag, textFlag } from "../lib/flags.ts";
import { TextGenerator } from "../lib/generate/text_generator.ts";
import { type TinyLlamaOptions, writeTinyLlama } from "../lib/testing/tiny_llama.ts";
import { parseFinetuneArgs } from "../lib/train/options.ts";
import type { ProgressSink } from "../lib/train/progress.ts";
import { finetune, resolveFinetuneRun } from "../lib/train/trainer.ts";
import { QUANTIZE_FLAGS } from "./_quantize_options.ts";

/** Options of `deno task demo`. */
export interface DemoCliOptions {
  /** Folder for the model, the adapter and the loss curve. */
  out: string;
  /** Optimizer steps of the fine-tuning. */
  steps: number;
  /** Held-out pairs scored before and after. */
  eval: number;
  /** Llama-7B layer shapes in part 1 (default: divided by 8). */
  full: boolean;
  /** Quantization block size in part 1. */
  blocksize: number;
}

/**
 * The flags of `deno task demo`.
 *
 * @example
 * ```ts
 * import { parseFlags } from "../lib/flags.ts";
 * import { DEMO_FLAGS } from "./_reversal_demo.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseFlags(DEMO_FLAGS, []), { out: "out/demo", steps: 300, eval: 40, full: false, blocksize: 64 });
 * assert.throws(() => parseFlags(DEMO_FLAGS, ["--steps", "1e9x"]), /--steps "1e9x"/);
 * ```
 */
export const DEMO_FLAGS: FlagTable<DemoCliOptions> = {
  out: textFlag("DIR", "folder for the model, the adapter and the loss curve", { default: "out/demo" }),
  steps: intFlag("N", "optimizer steps of the fine-tuning", { min: 1, default: 300 }),
  eval: intFlag("N", "held-out prompts scored before and after", { min: 1, default: 40 }),
  full: switchFlag("Llama-7B layer shapes in part 1 (default: divided by 8)"),
  blocksize: QUANTIZE_FLAGS.blockSize,
};

/** Options of {@linkcode runReversalDemo}. */
export interface ReversalDemoOptions {
  /** Folder for the model, the adapter and the loss curve. */
  out: string;
  /** Training prompt/completion JSON Lines. */
  trainData: string;
  /** Held-out prompt/completion JSON Lines. */
  testData: string;
  /** Optimizer steps. */
  steps: number;
  /** Held-out pairs scored before and after. */
  evalCount: number;
  /** Tiny model hidden size (default 64). */
  hidden?: number;
  /** Progress bar and log lines of the trainer (default stderr). */
  sink?: ProgressSink;
  /** Called with the trainer's flags before training. */
  onTrainStart?: (args: string[]) => void;
}

/** What {@linkcode runReversalDemo} measured and wrote. */
export interface ReversalDemoResult {
  /** The tiny model's folder. */
  modelDir: string;
  /** The adapter's folder (`adapter_model.safetensors`, `adapter_config.json`). */
  adapterDir: string;
  /** The loss curve. */
  lossSvgPath: string;
  /** The trainer's metrics. */
  metricsPath: string;
  /** The flags the trainer ran with (as for `deno task finetune`). */
  finetuneArgs: string[];
  /** Held-out accuracy and outputs of the base model. */
  before: EvalResult;
  /** Held-out accuracy and outputs after fine-tuning. */
  after: EvalResult;
  /** The last step's loss. */
  lastLoss: number;
  /** Training wall time. */
  trainSeconds: number;
}

/**
 * The demo's fine-tuning flags. A tiny, randomly initialised model learning a task from scratch needs a far
 * larger learning rate and batch than QLoRA's defaults for pretrained models (2e-4, batch 1 × 16 accumulated).
 *
 * @param modelDir The model folder.
 * @param data The training data.
 * @param out The run's folder.
 * @param steps Optimizer steps.
 * @returns Flags for {@linkcode parseFinetuneArgs}.
 *
 * @example
 * ```ts
 * import { reversalDemoFlags } from "./_reversal_demo.ts";
 * import assert from "node:assert/strict";
 * assert.ok(reversalDemoFlags("m", "d.jsonl", "o", 300).includes("--lora-r"));
 * ```
 */
export function reversalDemoFlags(modelDir: string, data: string, out: string, steps: number): string[] {
  return [
    ...["--model", modelDir, "--data", data, "--out", out],
    ...["--lora-r", "16", "--lora-alpha", "32", "--lora-dropout", "0"],
    ...["--lr", "2e-3", "--schedule", "cosine", "--warmup-steps", String(Math.min(10, steps))],
    ...["--batch-size", "16", "--grad-accum", "1", "--steps", String(steps), "--save-every", "0", "--seed", "0"],
    "--overwrite", // a second demo run replaces its own adapter
  ];
}

/**
 * The demo's tiny model: `lm_head` std `1/√hidden` (with the default 0.02 a frozen `lm_head` caps the logits and
 * LoRA alone barely moves the loss).
 *
 * @param hidden Hidden size.
 * @returns Options of {@linkcode writeTinyLlama}.
 *
 * @example
 * ```ts
 * import { reversalDemoModel } from "./_reversal_demo.ts";
 * import assert from "node:assert/strict";
 * assert.equal(reversalDemoModel(64).intermediate, 172);
 * ```
 */
export function reversalDemoModel(hidden = 64): TinyLlamaOptions {
  return { hidden, intermediate: Math.round(hidden * 2.6875), lmHeadStd: 1 / Math.sqrt(hidden) };
}

/**
 * Runs the demo: writes the tiny model ({@linkcode reversalDemoModel}), scores greedy completions of held-out prompts, fine-tunes,
 * scores again.
 *
 * @param gpu The device.
 * @param opts Folders, data, steps, evaluation size, progress sink.
 * @returns Accuracies before and after, and where the files are.
 *
 * @example Two steps on a small model
 * ```ts
 * import { requestGpu } from "../lib/gpu/device.ts";
 * import { runReversalDemo } from "./_reversal_demo.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const data = `${dir}/d.jsonl`;
 * await Deno.writeTextFile(data, '{"prompt": "abc=", "completion": "cba"}\n');
 * const sink = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };
 * const r = await runReversalDemo(await requestGpu(), { out: dir, trainData: data, testData: data, steps: 2, evalCount: 1, hidden: 32, sink });
 * assert.equal(r.after.total, 1);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runReversalDemo(gpu: Gpu, opts: ReversalDemoOptions): Promise<ReversalDemoResult> {
  const steps = opts.steps;
  const modelDir = join(opts.out, "tiny-llama");
  const adapterDir = join(opts.out, "adapter");
  await writeTinyLlama(modelDir, reversalDemoModel(opts.hidden));
  const pairs: EvalPair[] = (await readJsonl(opts.testData)).slice(0, opts.evalCount).map((r) => {
    if (r.kind !== "prompt") throw new Error(`${opts.testData}: line ${r.line} is not a prompt/completion pair`);
    return { prompt: r.prompt, completion: r.completion };
  });
  const score = async (adapter: string | null): Promise<EvalResult> => {
    const g = await TextGenerator.load(gpu, modelDir, adapter);
    try {
      const maxNewTokens = Math.max(...pairs.map((p) => p.completion.length)) + 2;
      return await exactMatchAccuracy(pairs, async (p) => (await g.complete(p, { maxNewTokens })).text);
    } finally {
      g.destroy();
    }
  };
  const before = await score(null);

  const finetuneArgs = reversalDemoFlags(modelDir, opts.trainData, adapterDir, steps);
  opts.onTrainStart?.(finetuneArgs);
  const parsed = parseFinetuneArgs(finetuneArgs);
  if (parsed.kind !== "run") throw new Error("Demo: the fine-tuning flags do not describe a run");
  const t0 = performance.now();
  const result = await finetune(gpu, await resolveFinetuneRun(parsed), { sink: opts.sink });
  const trainSeconds = (performance.now() - t0) / 1000;

  const after = await score(adapterDir);
  return {
    modelDir,
    adapterDir,
    lossSvgPath: result.lossSvgPath ?? join(adapterDir, "loss.svg"),
    metricsPath: result.metricsPath,
    finetuneArgs,
    before,
    after,
    lastLoss: result.lastLoss,
    trainSeconds,
  };
}
