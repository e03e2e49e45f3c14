/**
 * The LLM-QAT training loop behind `deno task qat`: the student (dense f32 weights of every decoder projection,
 * fake-quantized to the run's bits) learns from the frozen full-precision teacher by distillation on generated
 * sequences; AdamW over the projections only (embeddings, norms and `lm_head` stay frozen), gradient
 * checkpointing, metrics, loss curve and checkpoints as the finetune trainer writes them (its modules), and at the
 * end a Hugging Face model folder with the trained weights and their quantization settings.
 *
 * @module
 */

import { join } from "../platform/path.ts";
import type { Gpu } from "../gpu/device.ts";
import { DataLoader } from "../data/loader.ts";
import { LlamaModel } from "../model/llama.ts";
import { AdamW } from "../optim/adamw.ts";
import { lrAt } from "../optim/schedule.ts";
import { SafetensorsFile } from "../io/safetensors_reader.ts";
import { writeSafetensors } from "../io/safetensors_writer.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import { _unlessNotFound } from "../io/_file.ts";
import { readStateFile } from "../optim/state_file.ts";
import { checkpointDir, readTrainerState, saveCheckpoint } from "../train/checkpoint.ts";
import { findResumePoint, LOSS_SVG_FILE, METRICS_FILE, prepareFreshRun } from "../train/run_folder.ts";
import { writeLossSvg } from "../train/loss_svg.ts";
import { MetricsWriter, readMetrics, reportStep, type StepMetrics } from "../train/metrics.ts";
import { ProgressBar, type ProgressSink } from "../train/progress.ts";
import { OPTIMIZER_STATE_FILE } from "../train/trainer.ts";
import { FULL_PRECISION, parseQatBits } from "../qlinear/qat_bits.ts";
import { readGeneratedExamples } from "./data.ts";
import { distillationLoss } from "./distill.ts";
import { writeQatModel } from "./export.ts";
import { QatLinear } from "../qlinear/qat_linear.ts";
import { parseQatArgs, type QatArgs, type QatOptions } from "./options.ts";
import { storage } from "../platform/storage.ts";

/** File of the trained projection weights (f32) inside a checkpoint. */
export const QAT_WEIGHTS_FILE = "qat_weights.safetensors";
/** Folder of the trained model inside a run's folder. */
export const QAT_MODEL_DIR = "model";

/** Hooks of {@linkcode trainQat}. */
export interface QatHooks {
  /** Where the progress bar goes (default stderr). */
  sink?: ProgressSink;
  /** Called after each step's metrics are written. */
  onStep?: (metrics: StepMetrics) => void;
}

/** What {@linkcode trainQat} returns. */
export interface QatResult {
  /** Steps done, all sessions. */
  steps: number;
  /** The last step's mean KL per token. */
  lastLoss: number;
}

/** A QAT run ready to start: its options and flags, and where it resumes from (null: a fresh run). */
export interface QatRun {
  /** The run's options. */
  options: QatOptions;
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
 * Resolves parsed flags to a run as the finetune trainer does (`lib/train/run_folder.ts`): a fresh run in a new or
 * empty `--out` (or one cleared by `--overwrite`) with a new run id, or a resumed one with the flags saved in the
 * last intact checkpoint of the run that wrote the folder.
 *
 * @param parsed From {@linkcode parseQatArgs} (not help).
 * @param log Where notes go (a checkpoint skipped as damaged or another run's; default stderr).
 * @returns The run.
 * @throws {Error} If `--out` is a file or a non-empty folder (fresh run), or the folder to resume has no intact
 *   checkpoint of its run.
 *
 * @example
 * ```ts
 * import { parseQatArgs, resolveQatRun } from "@qlora/webgpu/qat";
 * import assert from "node:assert/strict";
 * const out = await Deno.makeTempDir();
 * await assert.rejects(resolveQatRun({ kind: "resume", out, overrides: [] }), /no complete checkpoint/);
 * await Deno.mkdir(`${out}/model`);
 * const fresh = parseQatArgs(["--model", "m", "--data", "d.jsonl", "--out", out]);
 * assert.ok(fresh.kind === "run");
 * await assert.rejects(resolveQatRun(fresh), /already holds model/);
 * await Deno.remove(out, { recursive: true });
 * ```
 */
export async function resolveQatRun(
  parsed: Exclude<QatArgs, { kind: "help" }>,
  log: (message: string) => void = console.error,
): Promise<QatRun> {
  if (parsed.kind === "run") {
    await prepareFreshRun(parsed.options.out, parsed.options.overwrite, [QAT_MODEL_DIR]);
    return { ...parsed, resumeFrom: null, startStep: 0, runId: crypto.randomUUID() };
  }
  const { checkpoint, state } = await findResumePoint(parsed.out, _checkCheckpointFiles, log);
  const again = parseQatArgs([...state.args, ...parsed.overrides]);
  if (again.kind !== "run") throw new Error(`${checkpoint.dir}: the saved flags do not describe a run`);
  // The run continues in the folder it was resumed from, wherever it was first written.
  const options = { ...again.options, out: parsed.out };
  return { options, args: again.args, resumeFrom: checkpoint.dir, startStep: state.step, runId: state.runId };
}

/** Throws if a checkpoint's weights or optimizer state cannot be read whole (truncated, corrupt, missing). */
async function _checkCheckpointFiles(dir: string): Promise<void> {
  using f = await SafetensorsFile.open(join(dir, QAT_WEIGHTS_FILE));
  for (const name of f.names()) await f.read(name);
  await readStateFile(join(dir, OPTIMIZER_STATE_FILE));
}

/**
 * Runs (or continues) LLM-QAT.
 *
 * @param gpu The device.
 * @param run From {@linkcode resolveQatRun}.
 * @param hooks Progress sink and per-step callback.
 * @returns Steps and last loss.
 * @throws {Error} For bad data, a model that does not fit, or a non-finite loss or gradient (naming the step).
 */
export async function trainQat(
  gpu: Gpu,
  run: QatRun,
  hooks: QatHooks = {},
): Promise<QatResult> {
  const { options: o, args, resumeFrom, startStep, runId } = run;
  const bits = parseQatBits(o.bits);
  const load = { lora: null, gradientCheckpointing: o.checkpointing } as const;
  const student = await LlamaModel.load(gpu, o.model, { ...load, qat: { bits, train: true } });
  const teacher = await LlamaModel.load(gpu, o.model, { ...load, qat: { bits: FULL_PRECISION } });
  try {
    const layers = student.projections().filter((p) => p instanceof QatLinear);
    const tok = await loadTokenizer(o.model);
    const maxSeqLen = o.maxSeqLen ?? student.config.maxPositionEmbeddings;
    const loader = new DataLoader(await readGeneratedExamples(o.data, maxSeqLen), {
      batchSize: o.batchSize,
      gradAccum: o.gradAccum,
      shuffle: true,
      seed: o.seed,
      padId: tok.padId,
    });
    const totalSteps = o.steps ?? o.epochs * loader.stepsPerEpoch;
    const schedule = { kind: o.schedule, lr: o.lr, warmupSteps: o.warmupSteps, totalSteps } as const;
    const params = layers.map((l) => ({ name: `${l.path}.weight`, param: l.weight, grad: l.grad! }));
    const opt = new AdamW(gpu, params, { lr: o.lr, weightDecay: o.weightDecay });
    if (resumeFrom) {
      using f = await SafetensorsFile.open(join(resumeFrom, QAT_WEIGHTS_FILE));
      for (const p of params) p.param.write(await f.readF32(p.name));
      for (const l of layers) l.weightChanged();
      await opt.load(join(resumeFrom, OPTIMIZER_STATE_FILE));
      loader.restore((await readTrainerState(resumeFrom)).dataPosition);
    }
    await storage().mkdir(o.out, { recursive: true });
    const metricsPath = join(o.out, METRICS_FILE);
    const metrics = await MetricsWriter.open(metricsPath, resumeFrom ? startStep : undefined, runId);
    const progress = new ProgressBar(totalSteps, { sink: hooks.sink });
    let lastLoss = NaN;
    try {
      for (let step = startStep + 1; step <= totalSteps; step++) {
        const lr = lrAt(schedule, step - 1);
        const { batches, tokens } = loader.nextStep();
        gpu.budget.resetPeak();
        const t0 = performance.now();
        student.zeroGrad();
        let lossSum = 0;
        for (const b of batches) {
          const loss = distillationLoss(student, teacher, b);
          lossSum += (await student.forwardBackward(b, { gradScale: 1 / tokens, loss })).lossSum;
        }
        // As the trainer: the norm and clipping run inside the optimizer's step (a non-finite norm changes nothing).
        await opt.step({ lr, maxGradNorm: o.maxGradNorm > 0 ? o.maxGradNorm : Infinity });
        const gradNorm = await opt.gradNorm();
        if (!Number.isFinite(gradNorm)) throw new Error(`Step ${step}: the gradient norm is ${gradNorm}`);
        for (const l of layers) l.weightChanged();
        const seconds = (performance.now() - t0) / 1000;
        lastLoss = lossSum / tokens;
        const inputTokens = batches.reduce((s, b) => s + b.lengths.reduce((x, y) => x + y, 0), 0);
        const s = { step, loss: lastLoss, lr, gradNorm, tokens, inputTokens, seconds };
        await reportStep({ metrics, progress, onStep: hooks.onStep }, s, gpu.budget.report().peak);
        if (o.saveEvery > 0 && step % o.saveEvery === 0 && step < totalSteps) {
          await saveCheckpoint(o.out, { step, dataPosition: loader.position, args, runId }, async (dir) => {
            const tensors = [];
            for (const p of params) {
              const data = new Uint8Array((await p.param.toFloat32()).buffer);
              tensors.push({ name: p.name, dtype: "F32" as const, shape: p.param.shape, data });
            }
            await writeSafetensors(join(dir, QAT_WEIGHTS_FILE), tensors);
            await opt.save(join(dir, OPTIMIZER_STATE_FILE));
          });
          progress.log(`Saved ${checkpointDir(o.out, step)}`);
        }
      }
    } finally {
      metrics.close();
      progress.done();
    }
    const trained = new Map<string, Float32Array>();
    for (const p of params) trained.set(p.name, await p.param.toFloat32());
    const modelDir = join(o.out, QAT_MODEL_DIR);
    // A resumed run may have written its model before the kill (e.g. in the loss curve's write): this one replaces it.
    if (resumeFrom) await storage().remove(modelDir, { recursive: true }).catch(_unlessNotFound);
    await writeQatModel(o.model, modelDir, trained, bits);
    await writeLossSvg(join(o.out, LOSS_SVG_FILE), await readMetrics(metricsPath));
    return { steps: totalSteps, lastLoss };
  } finally {
    student.destroy();
    teacher.destroy();
  }
}
