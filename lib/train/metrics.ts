/**
 * `OUT/metrics.jsonl`: exactly one JSON object per optimizer step, numbered from 1. Lines written by a fine-tuning
 * run also carry `"run"`, the id of the run (the one in its checkpoints' `trainer_state.json`), so `--resume`
 * continues only the run that wrote the folder; files without it (older ones) read as before.
 *
 * @module
 */

/** What one optimizer step reports. */
export interface StepMetrics {
  /** Optimizer step, from 1. */
  step: number;
  /** The step's own loss before its update: mean over its unmasked label tokens (not smoothed). */
  loss: number;
  /** Learning rate used by the step. */
  lr: number;
  /** Global L2 norm of the gradients before clipping. */
  grad_norm: number;
  /** Label tokens in the step's loss. */
  tokens: number;
  /** Tokens per second of the step (input tokens, padding excluded). */
  tokens_per_s: number;
  /** Peak accounted GPU bytes during the step. */
  gpu_bytes: number;
  /** Id of the run that wrote the line (absent when the writer was given none, and in older files). */
  run?: string;
}

import { _writeAll } from "../io/_file.ts";
import { writeFileAtomic } from "../io/atomic_write.ts";
import { storage, type WritableFile } from "../platform/storage.ts";
import type { ProgressBar } from "./progress.ts";

const FIELDS = ["step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "gpu_bytes"] as const;

/**
 * Appends step metrics to a JSON Lines file, one line per step, flushed as it goes. On resume it first drops the
 * lines past the checkpoint's step (a killed run may have logged steps it never saved), so the file ends up as
 * if the run had never stopped; the kept lines are rewritten atomically, so a kill then loses nothing.
 *
 * @example
 * ```ts
 * import { MetricsWriter, readMetrics } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const path = (await Deno.makeTempDir()) + "/metrics.jsonl";
 * const m = { loss: 2, lr: 1e-4, grad_norm: 1, tokens: 10, tokens_per_s: 5, gpu_bytes: 1024 };
 * const w = await MetricsWriter.open(path);
 * await w.write({ step: 1, ...m });
 * await w.write({ step: 2, ...m });
 * w.close();
 * const again = await MetricsWriter.open(path, 1);
 * again.close();
 * assert.deepEqual((await readMetrics(path)).map((r) => r.step), [1]);
 * ```
 */
export class MetricsWriter {
  #file: WritableFile;
  #path: string;
  #last: number;
  #run: string | undefined;
  #encoder = new TextEncoder();

  private constructor(file: WritableFile, path: string, last: number, run: string | undefined) {
    this.#file = file;
    this.#path = path;
    this.#last = last;
    this.#run = run;
  }

  /**
   * Opens the file: a fresh run truncates it; a resumed run keeps the steps up to `resumeStep`.
   *
   * @param path The metrics file.
   * @param resumeStep The step of the checkpoint being resumed (undefined: a fresh run).
   * @param run The run's id, written on every line as `"run"` (undefined: no such field).
   * @returns The writer.
   * @throws {Error} When resuming and the kept lines do not number 1..resumeStep.
   */
  static async open(path: string, resumeStep?: number, run?: string): Promise<MetricsWriter> {
    if (resumeStep === undefined) {
      return new MetricsWriter(await storage().openWrite(path), path, 0, run);
    }
    const kept = (await _completeLines(path)).filter((m) => m.step <= resumeStep);
    if (kept.length !== resumeStep || kept.some((m, i) => m.step !== i + 1)) {
      throw new Error(`${path}: expected steps 1..${resumeStep} to resume, found ${kept.length} of them`);
    }
    // Rewritten beside the file and renamed over it: truncating in place, a kill would lose every step.
    await writeFileAtomic(path, kept.map((m) => JSON.stringify(m) + "\n").join(""));
    return new MetricsWriter(await storage().openWrite(path, { append: true }), path, resumeStep, run);
  }

  /**
   * Appends one step's line.
   *
   * @param metrics The step's metrics; steps must follow each other from 1.
   * @throws {Error} For a step out of order or a field that is not a finite number (a NaN loss is written as
   *   null and reported by the caller, not here).
   */
  async write(metrics: StepMetrics): Promise<void> {
    if (metrics.step !== this.#last + 1) {
      throw new Error(`metrics.jsonl: step ${metrics.step} written after step ${this.#last}`);
    }
    const line: Record<string, number | string | null> = {};
    for (const k of FIELDS) {
      const v = metrics[k];
      if (typeof v !== "number") throw new Error(`metrics.jsonl: step ${metrics.step} has no number "${k}"`);
      line[k] = Number.isFinite(v) ? v : null;
    }
    if (this.#run !== undefined) line.run = this.#run;
    await _writeAll(this.#file, this.#encoder.encode(JSON.stringify(line) + "\n"), this.#path);
    // In place now: --resume reads the run's steps from here, and OPFS (a reloaded tab) keeps only synced writes.
    await this.#file.sync();
    this.#last = metrics.step;
  }

  /** Closes the file. */
  close(): void {
    this.#file.close();
  }
}

/**
 * Reads a metrics file.
 *
 * @param path The `metrics.jsonl` file.
 * @returns One record per line (a value that was not finite was written, and comes back, as null).
 * @throws {Error} Naming the file and line for a line that is not a JSON object with a `step`.
 *
 * @example
 * ```ts
 * import { readMetrics } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, '{"step": 1, "loss": 3}\n');
 * assert.equal((await readMetrics(path))[0].loss, 3);
 * ```
 */
export async function readMetrics(path: string): Promise<StepMetrics[]> {
  return _parse(await storage().readTextFile(path), path);
}

/**
 * The run that wrote the last complete line of a metrics file: its `"run"` id.
 *
 * @param path The `metrics.jsonl` file.
 * @returns `{ run }` (run undefined for lines without an id), or null when the file is missing or has no
 *   complete line.
 * @throws {Error} Naming the file and line for a line that is not a metrics line.
 *
 * @example
 * ```ts
 * import { metricsRun } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, '{"step": 1, "loss": 3, "run": "a1"}\n{"step": 2, "lo');
 * assert.deepEqual(await metricsRun(path), { run: "a1" });
 * ```
 */
export async function metricsRun(path: string): Promise<{ run: string | undefined } | null> {
  const last = (await _completeLines(path)).at(-1);
  return last ? { run: typeof last.run === "string" ? last.run : undefined } : null;
}

/** The complete lines of a metrics file (a line torn by a kill, with no newline yet, is dropped); none if missing. */
async function _completeLines(path: string): Promise<StepMetrics[]> {
  let text = "";
  try {
    text = await storage().readTextFile(path);
  } catch (e) {
    if (!(storage().isNotFound(e))) throw e;
  }
  return _parse(text.slice(0, text.lastIndexOf("\n") + 1), path);
}

function _parse(text: string, path: string): StepMetrics[] {
  const out: StepMetrics[] = [];
  text.split("\n").forEach((l, i) => {
    if (l.trim() === "") return;
    let v: unknown = null;
    try {
      v = JSON.parse(l);
    } catch { /* reported below */ }
    if (!v || typeof v !== "object" || typeof (v as StepMetrics).step !== "number") {
      throw new Error(`${path}:${i + 1}: not a metrics line`);
    }
    out.push(v as StepMetrics);
  });
  return out;
}

/** Where a training loop reports each finished step. */
export interface StepReport {
  /** The run's `metrics.jsonl`. */
  metrics: MetricsWriter;
  /** The terminal's (or page's) progress bar. */
  progress: ProgressBar;
  /** The caller's hook, called with each step's metrics. */
  onStep?: (metrics: StepMetrics) => void;
}

/** What a training loop measured of one finished optimizer step. */
export interface StepMeasure {
  /** Optimizer step, from 1. */
  step: number;
  /** Mean loss over the step's label tokens. */
  loss: number;
  /** Learning rate used. */
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Label tokens in the loss. */
  tokens: number;
  /** Input tokens (padding excluded). */
  inputTokens: number;
  /** Wall time of the step. */
  seconds: number;
}

/**
 * Reports one finished step as every training loop does: a `metrics.jsonl` line (with the peak accounted GPU bytes
 * of the step), the caller's hook, and the progress bar.
 *
 * @param to The run's metrics writer, progress bar and hook.
 * @param s The step's figures.
 * @param gpuBytes Peak accounted GPU bytes of the step.
 * @returns The metrics written.
 *
 * @example
 * ```ts
 * import { MetricsWriter, ProgressBar, readMetrics, reportStep } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const path = (await Deno.makeTempDir()) + "/metrics.jsonl";
 * const metrics = await MetricsWriter.open(path);
 * const progress = new ProgressBar(1, { sink: { writeSync: (b) => b.length, isTerminal: () => false } });
 * const s = { step: 1, loss: 2, lr: 1e-4, gradNorm: 1, tokens: 10, inputTokens: 12, seconds: 2 };
 * const m = await reportStep({ metrics, progress }, s, 1024);
 * metrics.close();
 * assert.equal(m.tokens_per_s, 6);
 * assert.deepEqual(await readMetrics(path), [m]);
 * ```
 */
export async function reportStep(to: StepReport, s: StepMeasure, gpuBytes: number): Promise<StepMetrics> {
  const m: StepMetrics = {
    step: s.step,
    loss: s.loss,
    lr: s.lr,
    grad_norm: s.gradNorm,
    tokens: s.tokens,
    tokens_per_s: s.inputTokens / s.seconds,
    gpu_bytes: gpuBytes,
  };
  await to.metrics.write(m);
  to.onStep?.(m);
  to.progress.update({ step: s.step, loss: m.loss, tokensPerS: m.tokens_per_s, gpuBytes });
  return m;
}
