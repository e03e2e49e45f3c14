/**
 * The jobs: fine-tuning (`finetune`, checkpoints, metrics, loss curve, progress), generation (`generate`,
 * `TextGenerator`, sampling), merging an adapter into its base model, and the command-line flag tables and parser
 * their CLIs share.
 *
 * @example The fine-tuning flags
 * ```ts
 * import { parseFinetuneArgs } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const run = parseFinetuneArgs(["--model", "m", "--data", "d.jsonl", "--out", "o", "--lora-r", "8"]);
 * assert.ok(run.kind === "run");
 * assert.equal(run.options.loraR, 8);
 * ```
 *
 * @module
 */

export * from "../flags.ts";
export * from "./checkpoint.ts";
export * from "./loss_svg.ts";
export * from "./metrics.ts";
export * from "./options.ts";
export * from "./plan.ts";
export * from "./progress.ts";
export * from "./run_folder.ts";
export * from "./trainer.ts";
export * from "../generate/generate.ts";
export * from "../generate/options.ts";
export * from "../generate/sampling.ts";
export * from "../generate/text_generator.ts";
export * from "../generate/text_streamer.ts";
export * from "../merge/merge_folder.ts";
export * from "../merge/merge_lora.ts";
export * from "../merge/options.ts";
