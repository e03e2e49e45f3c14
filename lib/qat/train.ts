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
import { clipGradNorm } from "../kernels/clip_grad_norm.ts";
import { DataLoader } from "../data/loader.ts";
import { LlamaModel } from "../model/llama.ts";
import { AdamW } from "../optim/adamw.ts";
import { lrAt } from "../optim/schedule.ts";
import { SafetensorsFile } from "../io/safetensors_reader.ts";
import { writeSafetensors } from "../io/safetensors_writer.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import { checkpointDir, findLastCheckpoint, readTrainerState, saveCheckpoint } from "../train/checkpoint.ts";
import { writeLossSvg } from "../train/loss_svg.ts";
import { MetricsWriter, readMetrics, type StepMetrics } from "../train/metrics.ts";
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

/**
 * A run's options: as parsed, or for `--resume` the flags saved in the last checkpoint.
 *
 * @param parsed From {@linkcode parseQatArgs} (not help).
 * @returns Options, flags and the checkpoint to resume from (or null).
 * @throws {Error} If the folder to resume has no complete checkpoint.
 */
export async function resolveQatRun(
  parsed: Exclude<QatArgs, { kind: "help" }>,
): Promise<{ options: QatOptions; args: string[]; resumeFrom: string | null; startStep: number }> {
  if (parsed.kind === "run") return { ...parsed, resumeFrom: null, startStep: 0 };
  const last = await findLastCheckpoint(parsed.out);
  if (!last) throw new Error(`--resume ${parsed.out}: no complete checkpoint-N folder to resume from`);
  const state = await readTrainerState(last.dir);
  const again = parseQatArgs([...state.args, ...parsed.overrides]);
  if (again.kind !== "run") throw new Error(`${last.dir}: the saved flags do not describe a run`);
  // The run continues in the folder it was resumed from, wherever it was first written.
  const options = { ...again.options, out: parsed.out };
  return { options, args: again.args, resumeFrom: last.dir, startStep: state.step };
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
  run: Awaited<ReturnType<typeof resolveQatRun>>,
  hooks: QatHooks = {},
): Promise<QatResult> {
  const { options: o, args, resumeFrom, startStep } = run;
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
      await opt.load(join(resumeFrom, OPTIMIZER_STATE_FILE));
      loader.restore((await readTrainerState(resumeFrom)).dataPosition);
    }
    await storage().mkdir(o.out, { recursive: true });
    const metricsPath = join(o.out, "metrics.jsonl");
    const metrics = await MetricsWriter.open(metricsPath, resumeFrom ? startStep : undefined);
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
        const grads = params.map((p) => p.grad);
        const gradNorm = await clipGradNorm(gpu, grads, o.maxGradNorm > 0 ? o.maxGradNorm : Infinity);
        if (!Number.isFinite(gradNorm)) throw new Error(`Step ${step}: the gradient norm is ${gradNorm}`);
        await opt.step({ lr });
        await gpu.sync();
        const seconds = (performance.now() - t0) / 1000;
        lastLoss = lossSum / tokens;
        const inputTokens = batches.reduce((s, b) => s + b.lengths.reduce((x, y) => x + y, 0), 0);
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
        if (o.saveEvery > 0 && step % o.saveEvery === 0 && step < totalSteps) {
          await saveCheckpoint(o.out, { step, dataPosition: loader.position, args }, async (dir) => {
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
    await writeQatModel(o.model, join(o.out, "model"), trained, bits);
    await writeLossSvg(join(o.out, "loss.svg"), await readMetrics(metricsPath));
    return { steps: totalSteps, lastLoss };
  } finally {
    student.destroy();
    teacher.destroy();
  }
}
