/**
 * Learning-rate schedules, as transformers' `get_*_schedule_with_warmup`.
 *
 * @module
 */

/** The schedule shapes: `constant` (QLoRA's default; ignores warmup, as transformers does), the rest warm up linearly. */
export type LrScheduleKind = "constant" | "constant_with_warmup" | "linear" | "cosine";

/** A learning-rate schedule, for {@linkcode lrAt}. */
export interface LrSchedule {
  /** Shape. */
  kind: LrScheduleKind;
  /** Peak learning rate. */
  lr: number;
  /** Steps of linear warmup from 0 (default 0). */
  warmupSteps?: number;
  /** Total training steps (needed by `linear` and `cosine`). */
  totalSteps?: number;
  /** Cosine waves over the decay (default 0.5: from the peak down to 0). */
  numCycles?: number;
}

/**
 * The learning rate for optimizer step `step` (0 for the first step), as transformers' LambdaLR schedules.
 *
 * @param schedule Shape, peak rate, warmup and total steps.
 * @param step Steps already taken.
 * @returns The learning rate.
 * @throws {Error} If `linear` or `cosine` has no positive `totalSteps`.
 *
 * @example Linear decay after warmup
 * ```ts
 * import { lrAt } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const s = { kind: "linear" as const, lr: 1e-3, warmupSteps: 10, totalSteps: 110 };
 * assert.equal(lrAt(s, 5), 5e-4);
 * assert.equal(lrAt(s, 60), 5e-4);
 * assert.equal(lrAt({ kind: "constant", lr: 2e-4 }, 1000), 2e-4);
 * ```
 */
export function lrAt(schedule: LrSchedule, step: number): number {
  const { kind, lr } = schedule;
  if (kind === "constant") return lr;
  const warmup = schedule.warmupSteps ?? 0;
  if (step < warmup) return lr * step / Math.max(1, warmup);
  if (kind === "constant_with_warmup") return lr;
  const total = schedule.totalSteps ?? 0;
  if (!(total > 0)) throw new Error(`Learning-rate schedule "${kind}" needs totalSteps > 0 (got ${total})`);
  if (kind === "linear") return lr * Math.max(0, (total - step) / Math.max(1, total - warmup));
  const progress = (step - warmup) / Math.max(1, total - warmup);
  const cycles = schedule.numCycles ?? 0.5;
  return lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * cycles * 2 * progress)));
}
