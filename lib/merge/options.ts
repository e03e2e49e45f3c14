/**
 * The flags of `deno task merge`: one table, from which the parser, `--help` and the README's list come.
 *
 * @module
 */

import { choiceFlag, flagHelp, type FlagTable, parseFlags, switchFlag, textFlag } from "../flags.ts";

/** Options of a `deno task merge` run. */
export interface MergeCliOptions {
  /** Base model folder. */
  model: string;
  /** PEFT adapter folder. */
  adapter: string;
  /** Output folder. */
  out: string;
  /** Stored dtype of the merged weights. */
  dtype: "bf16" | "f32";
  /** Re-quantize the merged model to NF4 (bitsandbytes 4-bit). */
  quantize: boolean;
}

/** The flags of `deno task merge`, checked by the compiler against {@linkcode MergeCliOptions}. */
export const MERGE_FLAGS: FlagTable<MergeCliOptions> = {
  model: textFlag("DIR", "the base model folder (safetensors, plain or bitsandbytes 4-bit)", { required: true }),
  adapter: textFlag("DIR", "the PEFT adapter folder (e.g. the --out of deno task finetune)", { required: true }),
  out: textFlag("DIR", "the merged model folder (config, tokenizer and safetensors files)", { required: true }),
  dtype: choiceFlag("D", "stored dtype of the merged weights", ["bf16", "f32"], "bf16"),
  quantize: switchFlag("quantize the merged model to NF4 (bitsandbytes 4-bit folder)"),
};

/** The `--help` text of `deno task merge`. */
export const MERGE_HELP: string = `Merge a LoRA adapter into its base model: W' = deq(NF4(W)) + s·B·A.

Usage: deno task merge --model DIR --adapter DIR --out DIR [--dtype bf16|f32] [--quantize]

The adapter was trained against the NF4-quantized base, so every projection is written as its NF4 round trip
(plus the adapter's update where it has one), as PEFT's merge_and_unload does on a 4-bit model.

Options:
${flagHelp(MERGE_FLAGS)}`;

/**
 * Parses `deno task merge` flags.
 *
 * @param args The arguments (`Deno.args`).
 * @returns `null` for `--help`, else the options.
 * @throws {Error} Naming the flag for an unknown flag, a missing folder flag, or a bad dtype.
 *
 * @example
 * ```ts
 * import { parseMergeArgs } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const o = parseMergeArgs(["--model", "m", "--adapter", "a", "--out", "o"]);
 * assert.equal(o?.dtype, "bf16");
 * assert.throws(() => parseMergeArgs(["--model", "m", "--adapter", "a", "--out", "o", "--dtype", "f16"]), /--dtype/);
 * ```
 */
export function parseMergeArgs(args: readonly string[]): MergeCliOptions | null {
  return parseFlags(MERGE_FLAGS, args);
}
