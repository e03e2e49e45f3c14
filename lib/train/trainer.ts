/**
 * The QLoRA fine-tuning loop, top-down: load the tokenizer, the data and the model (NF4 base, LoRA adapters),
 * then for each optimizer step run its micro-batches forward and backward (gradients weighted by the step's
 * token count), clip the global gradient norm, take an AdamW step, log one metrics line, and save checkpoints;
 * at the end write the adapter and the loss curve.
 *
 * @module
 */

import { join } from "node:path";
import type { Gpu } from "../gpu/device.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import { loraToPeftConfig, writePeftAdapter } from "../io/peft.ts";
import { readJsonl } from "../data/records.ts";
import { tokenizeData, truncationReport } from "../data/examples.ts";
import { DataLoader } from "../data/loader.ts";
import { LlamaModel } from "../model/llama.ts";
import type { LoraConfig } from "../qlinear/lora_config.ts";
import { adapterLoraConfig, loadAdapterWeights } from "../model/load_adapter.ts";
import { createOptimizer } from "./_optimizer.ts";
import { clipGradNorm } from "../kernels/clip_grad_norm.ts";
import { lrAt, type LrSchedule } from "../optim/schedule.ts";
import { deriveSeed } from "../random.ts";
import { checkpointDir, findLastCheckpoint, readTrainerState, saveCheckpoint } from "./checkpoint.ts";
import { MetricsWriter, readMetrics, type StepMetrics } from "./metrics.ts";
import { writeLossSvg } from "./loss_svg.ts";
import { type FinetuneOptions, parseFinetuneArgs, runLength } from "./options.ts";
import { ProgressBar, type ProgressSink } from "./progress.ts";

/** File name of the optimizer state inside a checkpoint. */
export const OPTIMIZER_STATE_FILE = "optimizer.bin";

/** Hooks and switches of {@linkcode finetune}. */
export interface FinetuneHooks {
  /** Where the progress bar and log lines go (default stderr). */
  sink?: ProgressSink;
  /** Called after each step's metrics are written. */
  onStep?: (metrics: StepMetrics) => void;
  /** Stop after this step as if killed (for tests of `--resume`); nothing final is written. */
  stopAfter?: number;
}

/** What a run leaves behind. */
export interface FinetuneResult {
  /** The run's options. */
  options: FinetuneOptions;
  /** Steps done, all sessions. */
  steps: number;
  /** The last step's loss. */
  lastLoss: number;
  /** `OUT/metrics.jsonl`. */
  metricsPath: string;
  /** `OUT/loss.svg` (null when stopped early). */
  lossSvgPath: string | null;
}

/** A run ready to start: its options and flags, and where it resumes from (null: a fresh run). */
export interface ResolvedRun {
  /** The run's options. */
  options: FinetuneOptions;
  /** Its flags, saved in checkpoints. */
  args: string[];
  /** Checkpoint folder to continue from, or null. */
  resumeFrom: string | null;
  /** Steps already done (the checkpoint's step, or 0). */
  startStep: number;
}

/**
 * Resolves parsed flags to a run: a fresh run as given, or a resumed one with the flags saved in its last
 * complete checkpoint (plus `--gpu-memory`/`--page-size` if given again).
 *
 * @param parsed A `run` or `resume` result of {@linkcode parseFinetuneArgs}.
 * @returns The run.
 * @throws {Error} If the folder to resume has no complete checkpoint.
 *
 * @example
 * ```ts
 * import { parseFinetuneArgs, resolveFinetuneRun } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const out = await Deno.makeTempDir();
 * await assert.rejects(resolveFinetuneRun({ kind: "resume", out, overrides: [] }), /no complete checkpoint/);
 * await Deno.remove(out);
 * ```
 */
export async function resolveFinetuneRun(
  parsed: { kind: "run"; options: FinetuneOptions; args: string[] } | {
    kind: "resume";
    out: string;
    overrides: string[];
  },
): Promise<ResolvedRun> {
  if (parsed.kind === "run") return { options: parsed.options, args: parsed.args, resumeFrom: null, startStep: 0 };
  const last = await findLastCheckpoint(parsed.out);
  if (!last) throw new Error(`--resume ${parsed.out}: no complete checkpoint-N folder to resume from`);
  const state = await readTrainerState(last.dir);
  const again = parseFinetuneArgs([...state.args, ...parsed.overrides]);
  if (again.kind !== "run") throw new Error(`${last.dir}: the saved flags do not describe a run`);
  return { options: again.options, args: again.args, resumeFrom: last.dir, startStep: state.step };
}

/**
 * Runs (or continues) a fine-tuning run.
 *
 * @param gpu The device (its budget carries `--gpu-memory`).
 * @param run The run, from {@linkcode resolveFinetuneRun}.
 * @param hooks Progress sink, per-step callback, early stop.
 * @returns Where the results are.
 * @throws {Error} For bad data, a model or adapter that does not fit, a non-finite loss or gradient (naming the
 *   step).
 *
 * @example Two steps on a tiny model
 * ```ts
 * import { finetune, parseFinetuneArgs, requestGpu, resolveFinetuneRun } from "@qlora/webgpu";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeTinyLlama(`${dir}/model`, { layers: 1, hidden: 32, intermediate: 64, heads: 2, kvHeads: 1 });
 * await Deno.writeTextFile(`${dir}/d.jsonl`, '{"prompt": "ab=", "completion": "ba"}\n');
 * const parsed = parseFinetuneArgs(["--model", `${dir}/model`, "--data", `${dir}/d.jsonl`, "--out", `${dir}/out`,
 *   "--lora-r", "2", "--grad-accum", "1", "--steps", "2"]);
 * assert.ok(parsed.kind === "run");
 * const sink = { writeSync: (b: Uint8Array) => b.length, isTerminal: () => false };
 * const result = await finetune(await requestGpu(), await resolveFinetuneRun(parsed), { sink });
 * assert.equal(result.steps, 2);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function finetune(gpu: Gpu, run: ResolvedRun, hooks: FinetuneHooks = {}): Promise<FinetuneResult> {
  const { options, args, resumeFrom, startStep } = run;
  const log = (msg: string) => (hooks.sink ?? Deno.stderr).writeSync(new TextEncoder().encode(msg + "\n"));

  // 1. Model: the adapter's settings come from --init-adapter (or the checkpoint) when there is one.
  const adapterDir = resumeFrom ?? options.initAdapter;
  let lora: LoraConfig = {
    r: options.loraR,
    alpha: options.loraAlpha,
    dropout: options.loraDropout,
    targetModules: options.targetModules,
    seed: options.seed,
  };
  if (adapterDir) {
    lora = await adapterLoraConfig(adapterDir, options.seed);
    if (!resumeFrom) lora.dropout = options.loraDropout; // dropout is a training choice, not the adapter's
  }
  const model = await LlamaModel.load(gpu, options.model, {
    lora,
    gradientCheckpointing: options.checkpointing,
    precision: options.f16 ? "f16" : "f32",
  });
  try {
    const layers = model.loraLayers();
    if (adapterDir) await loadAdapterWeights(model, adapterDir);

    // 2. Data.
    const tok = await loadTokenizer(options.model);
    const maxSeqLen = options.maxSeqLen ?? model.config.maxPositionEmbeddings;
    const data = tokenizeData(tok, await readJsonl(options.data), maxSeqLen);
    const report = truncationReport(data, maxSeqLen);
    if (report) log(`${options.data}: ${report}`);
    const loader = new DataLoader(data.examples, {
      batchSize: options.batchSize,
      gradAccum: options.gradAccum,
      shuffle: options.shuffle,
      seed: options.seed,
      padId: tok.padId,
    });
    const { totalSteps, warmupSteps } = runLength(options, loader.stepsPerEpoch);
    const schedule: LrSchedule = {
      kind: options.schedule === "constant" ? "constant_with_warmup" : options.schedule,
      lr: options.lr,
      warmupSteps,
      totalSteps,
    };

    // 3. Optimizer over every A and B.
    const { opt, grads } = createOptimizer(gpu, layers, options);
    if (resumeFrom) {
      await opt.load(join(resumeFrom, OPTIMIZER_STATE_FILE));
      loader.restore((await readTrainerState(resumeFrom)).dataPosition);
      log(`Resuming ${options.out} from ${resumeFrom} (step ${startStep} of ${totalSteps})`);
    }

    // 4. The loop.
    await Deno.mkdir(options.out, { recursive: true });
    const metricsPath = join(options.out, "metrics.jsonl");
    const metrics = await MetricsWriter.open(metricsPath, resumeFrom ? startStep : undefined);
    const peft = loraToPeftConfig(model.lora!, options.model);
    const saveAdapter = async (dir: string) =>
      writePeftAdapter(dir, { config: peft, modules: await model.loraWeights() });
    const progress = new ProgressBar(totalSteps, { sink: hooks.sink });
    let lastLoss = NaN;
    try {
      for (let step = startStep + 1; step <= totalSteps; step++) {
        const lr = lrAt(schedule, step - 1);
        const { batches, tokens } = loader.nextStep();
        gpu.budget.resetPeak();
        const t0 = performance.now();
        model.zeroGrad();
        let lossSum = 0;
        let inputTokens = 0;
        for (const [i, b] of batches.entries()) {
          // Dropout masks are a pure function of this seed: a resumed run draws the same ones.
          const seed = deriveSeed(options.seed, step, i);
          lossSum += (await model.forwardBackward(b, { gradScale: 1 / tokens, seed })).lossSum;
          inputTokens += b.lengths.reduce((x, y) => x + y, 0);
        }
        const gradNorm = await clipGradNorm(gpu, grads, options.maxGradNorm > 0 ? options.maxGradNorm : Infinity);
        if (!Number.isFinite(gradNorm)) throw new Error(`Step ${step}: the gradient norm is ${gradNorm}`);
        await opt.step({ lr });
        await gpu.sync();
        const seconds = (performance.now() - t0) / 1000;
        lastLoss = lossSum / tokens;
        const m: StepMetrics = {
          step,
          loss: lastLoss,
          lr,
          grad_norm: gradNorm,
          tokens,
          tokens_per_s: inputTokens / seconds,
          gpu_bytes: gpu.budget.report().peak,
        };
        await metrics.write(m);
        hooks.onStep?.(m);
        progress.update({ step, loss: m.loss, tokensPerS: m.tokens_per_s, gpuBytes: m.gpu_bytes });
        if (options.saveEvery > 0 && step % options.saveEvery === 0 && step < totalSteps) {
          const state = { step, dataPosition: loader.position, args };
          await saveCheckpoint(options.out, state, async (dir) => {
            await saveAdapter(dir);
            await opt.save(join(dir, OPTIMIZER_STATE_FILE));
          });
          progress.log(`Saved ${checkpointDir(options.out, step)}`);
        }
        if (hooks.stopAfter === step) {
          return { options, steps: step, lastLoss, metricsPath, lossSvgPath: null };
        }
      }
    } finally {
      metrics.close();
      progress.done();
    }

    // 5. The final adapter in OUT itself, and the loss curve of the whole run.
    await saveAdapter(options.out);
    const lossSvgPath = join(options.out, "loss.svg");
    await writeLossSvg(lossSvgPath, await readMetrics(metricsPath));
    return { options, steps: totalSteps, lastLoss, metricsPath, lossSvgPath };
  } finally {
    model.destroy();
  }
}
