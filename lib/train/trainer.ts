/**
 * The QLoRA fine-tuning loop, top-down: load the tokenizer, the data and the model (NF4 base, LoRA adapters),
 * then for each optimizer step run its micro-batches forward and backward (gradients weighted by the step's
 * token count), clip the global gradient norm, take an AdamW step, log one metrics line, and save checkpoints;
 * at the end write the adapter and the loss curve.
 *
 * @module
 */

import { join } from "../platform/path.ts";
import type { Gpu } from "../gpu/device.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import { loraToPeftConfig, writePeftAdapter } from "../io/peft.ts";
import { readPeftAdapter } from "../io/peft.ts";
import { readJsonl } from "../data/records.ts";
import { tokenizeData, truncationReport } from "../data/examples.ts";
import { DataLoader } from "../data/loader.ts";
import { LlamaModel } from "../model/llama.ts";
import type { LoraConfig } from "../qlinear/lora_config.ts";
import { adapterLoraConfig, loadAdapterWeights } from "../model/load_adapter.ts";
import { createOptimizer } from "./_optimizer.ts";
import { writeProfile } from "../gpu/profiler.ts";
import { checkCrossEntropy } from "../kernels/cross_entropy.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { lrAt, type LrSchedule } from "../optim/schedule.ts";
import { deriveSeed } from "../random.ts";
import { loadLlamaConfig } from "../model/config.ts";
import { readStateFile } from "../optim/state_file.ts";
import { checkpointDir, readTrainerState, saveCheckpoint } from "./checkpoint.ts";
import { findResumePoint, LOSS_SVG_FILE, METRICS_FILE, prepareFreshRun } from "./run_folder.ts";
import { MetricsWriter, readMetrics, reportStep, type StepMetrics } from "./metrics.ts";
import { writeLossSvg } from "./loss_svg.ts";
import { type FinetuneOptions, parseFinetuneArgs, runLength } from "./options.ts";
import { ProgressBar, type ProgressSink } from "./progress.ts";
import { storage } from "../platform/storage.ts";

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
  /** Asked after each step: true stops there as `stopAfter` does (a page's Stop button; resume from a checkpoint). */
  shouldStop?: () => boolean;
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
  /** The run's id, in its checkpoints and metrics lines (undefined: a run resumed from before run ids). */
  runId: string | undefined;
}

/**
 * Resolves parsed flags to a run, checking what can be checked before anything loads: a fresh run as given, in a
 * new or empty `--out` (or one cleared by `--overwrite`), with a new run id; or a resumed one with the flags saved
 * in the last intact checkpoint of the run that wrote the folder (plus `--gpu-memory`/`--page-size` if given
 * again). Temporary files of killed writers in the folder are removed.
 *
 * @param parsed A `run` or `resume` result of {@linkcode parseFinetuneArgs}.
 * @param log Where notes go (a checkpoint skipped as damaged or another run's; default stderr).
 * @returns The run.
 * @throws {Error} If `--out` is a file or a non-empty folder (fresh run), the folder to resume has no intact
 *   checkpoint of its run, or `--max-seq-len` is above the model's context.
 *
 * @example
 * ```ts
 * import { parseFinetuneArgs, resolveFinetuneRun } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const out = await Deno.makeTempDir();
 * await assert.rejects(resolveFinetuneRun({ kind: "resume", out, overrides: [] }), /no complete checkpoint/);
 * await Deno.writeTextFile(`${out}/notes.txt`, "mine");
 * const fresh = parseFinetuneArgs(["--model", "m", "--data", "d.jsonl", "--out", out]);
 * assert.ok(fresh.kind === "run");
 * await assert.rejects(resolveFinetuneRun(fresh), /already holds notes\.txt/);
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export async function resolveFinetuneRun(
  parsed: { kind: "run"; options: FinetuneOptions; args: string[] } | {
    kind: "resume";
    out: string;
    overrides: string[];
  },
  log: (message: string) => void = console.error,
): Promise<ResolvedRun> {
  if (parsed.kind === "run") {
    await prepareFreshRun(parsed.options.out, parsed.options.overwrite);
    await _checkMaxSeqLen(parsed.options);
    return { options: parsed.options, args: parsed.args, resumeFrom: null, startStep: 0, runId: crypto.randomUUID() };
  }
  const { checkpoint, state } = await findResumePoint(parsed.out, _checkCheckpointFiles, log);
  const again = parseFinetuneArgs([...state.args, ...parsed.overrides]);
  if (again.kind !== "run") throw new Error(`${checkpoint.dir}: the saved flags do not describe a run`);
  await _checkMaxSeqLen(again.options);
  return {
    options: again.options,
    args: again.args,
    resumeFrom: checkpoint.dir,
    startStep: state.step,
    runId: state.runId,
  };
}

/** Throws if a checkpoint's adapter or optimizer state cannot be read whole (truncated, corrupt, missing). */
async function _checkCheckpointFiles(dir: string): Promise<void> {
  await readPeftAdapter(dir);
  await readStateFile(join(dir, OPTIMIZER_STATE_FILE));
}

/** Refuses `--max-seq-len` above the model's context now, not at the first step (reads only config.json). */
async function _checkMaxSeqLen(options: FinetuneOptions): Promise<void> {
  const config = await loadLlamaConfig(options.model);
  if (options.maxSeqLen !== null && options.maxSeqLen > config.maxPositionEmbeddings) {
    throw new Error(
      `--max-seq-len ${options.maxSeqLen} is above the model's context: max_position_embeddings is ` +
        `${config.maxPositionEmbeddings} in ${join(options.model, "config.json")}`,
    );
  }
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
  const { options, args, resumeFrom, startStep, runId } = run;
  const log = (msg: string) => (hooks.sink ?? storage().stderr).writeSync(new TextEncoder().encode(msg + "\n"));

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
    const opt = createOptimizer(gpu, layers, options);
    try {
      if (resumeFrom) {
        await opt.load(join(resumeFrom, OPTIMIZER_STATE_FILE));
        loader.restore((await readTrainerState(resumeFrom)).dataPosition);
        log(`Resuming ${options.out} from ${resumeFrom} (step ${startStep} of ${totalSteps})`);
      }

      // 4. The loop.
      await storage().mkdir(options.out, { recursive: true });
      const metricsPath = join(options.out, METRICS_FILE);
      const metrics = await MetricsWriter.open(metricsPath, resumeFrom ? startStep : undefined, runId);
      const peft = loraToPeftConfig(model.lora!, options.model);
      const saveAdapter = async (dir: string) =>
        writePeftAdapter(dir, { config: peft, modules: await model.loraWeights() });
      const saveAll = async (dir: string) => {
        await saveAdapter(dir);
        await opt.save(join(dir, OPTIMIZER_STATE_FILE));
      };
      const progress = new ProgressBar(totalSteps, { sink: hooks.sink });
      let lastLoss = NaN;
      if (options.profile) gpu.startProfile();
      try {
        for (let step = startStep + 1; step <= totalSteps; step++) {
          const lr = lrAt(schedule, step - 1);
          const { batches, tokens } = loader.nextStep();
          gpu.budget.resetPeak();
          const t0 = performance.now();
          model.zeroGrad();
          let inputTokens = 0;
          // The loss is read once per step, with the gradient norm: no host wait per micro-batch.
          const stats: Tensor[][] = [];
          for (const [i, b] of batches.entries()) {
            // Dropout masks are a pure function of this seed: a resumed run draws the same ones.
            const seed = deriveSeed(options.seed, step, i);
            stats.push((await model.forwardBackward(b, { gradScale: 1 / tokens, seed, deferLoss: true })).stats!);
            inputTokens += b.lengths.reduce((x, y) => x + y, 0);
          }
          // A non-finite gradient makes the step change nothing (the kernels read the norm); it is reported below.
          await opt.step({ lr, maxGradNorm: options.maxGradNorm > 0 ? options.maxGradNorm : Infinity });
          const { lossSum, gradNorm } = await readStepResults(gpu, stats, opt.gradNormBuffer, step);
          const seconds = (performance.now() - t0) / 1000;
          lastLoss = lossSum / tokens;
          const s = { step, loss: lastLoss, lr, gradNorm, tokens, inputTokens, seconds };
          await reportStep({ metrics, progress, onStep: hooks.onStep }, s, gpu.budget.report().peak);
          if (options.saveEvery > 0 && step % options.saveEvery === 0 && step < totalSteps) {
            await saveCheckpoint(options.out, { step, dataPosition: loader.position, args, runId }, saveAll);
            progress.log(`Saved ${checkpointDir(options.out, step)}`);
          }
          if (hooks.stopAfter === step || hooks.shouldStop?.()) {
            return { options, steps: step, lastLoss, metricsPath, lossSvgPath: null };
          }
        }
        if (options.profile) await writeProfile(gpu, options.out, totalSteps - startStep, log);
      } finally {
        metrics.close();
        progress.done();
      }

      // 5. The final adapter in OUT itself, and the loss curve of the whole run.
      try {
        await saveAdapter(options.out);
      } catch (e) {
        // The trained adapter is still in memory: keep it as the last checkpoint, so --resume redoes this write.
        const state = { step: totalSteps, dataPosition: loader.position, args, runId };
        const kept = await saveCheckpoint(options.out, state, saveAll).catch((e2) => {
          throw new Error(
            `The final adapter could not be written to ${options.out} (${(e as Error).message}), nor kept as ` +
              `${checkpointDir(options.out, totalSteps)} (${(e2 as Error).message})`,
          );
        });
        throw new Error(
          `The final adapter could not be written to ${options.out} (${(e as Error).message}); it is kept in ` +
            `${kept}: fix the cause and run --resume ${options.out} to write it`,
        );
      }
      const lossSvgPath = join(options.out, LOSS_SVG_FILE);
      await writeLossSvg(lossSvgPath, await readMetrics(metricsPath));
      return { options, steps: totalSteps, lastLoss, metricsPath, lossSvgPath };
    } finally {
      opt.destroy(); // the state of a finished or failed run
    }
  } finally {
    model.destroy();
  }
}

/**
 * Reads the step's loss stats (per micro-batch) and the optimizer's gradient norm in one host wait (copied into one
 * buffer), frees the stats, and checks both, naming the step. Sums as `forwardBackward` would have: per micro-batch
 * first.
 */
async function readStepResults(
  gpu: Gpu,
  perBatch: Tensor[][],
  norm: GPUBuffer,
  step: number,
): Promise<{ lossSum: number; gradNorm: number }> {
  const stats = perBatch.flat();
  const all = gpu.createBuffer(stats.length * 32 + 8, "scratch", "step results");
  let values: Float32Array;
  try {
    stats.forEach((s, i) => gpu.copy(s.buffer, s.byteOffset, all, i * 32, 32));
    gpu.copy(norm, 0, all, stats.length * 32, 8);
    values = await gpu.readF32(all);
  } finally {
    for (const s of stats) s.destroy();
    gpu.free(all);
  }
  let lossSum = 0;
  let i = 0;
  for (const batch of perBatch) {
    let sum = 0;
    for (const _ of batch) {
      try {
        sum += checkCrossEntropy(values.subarray(i * 8, ++i * 8)).sum;
      } catch (e) {
        throw new Error(`Step ${step}: the loss is not finite: ${(e as Error).message}`);
      }
    }
    lossSum += sum;
  }
  const gradNorm = Math.sqrt(values[stats.length * 8]);
  if (!Number.isFinite(gradNorm)) throw new Error(`Step ${step}: the gradient norm is ${gradNorm}`);
  return { lossSum, gradNorm };
}
