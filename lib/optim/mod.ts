/**
 * Optimizers: AdamW, PagedAdamW and their 8-bit variants, learning-rate schedules, and optimizer state files.
 *
 * @example A linear schedule after warmup
 * ```ts
 * import { lrAt } from "@qlora/webgpu/optim";
 * import assert from "node:assert/strict";
 * const s = { kind: "linear" as const, lr: 1e-3, warmupSteps: 10, totalSteps: 110 };
 * assert.equal(lrAt(s, 5), 5e-4);
 * assert.equal(lrAt(s, 60), 5e-4);
 * ```
 *
 * @module
 */

export * from "./adamw.ts";
export * from "./adamw_variants.ts";
export * from "./schedule.ts";
export * from "./state_file.ts";
