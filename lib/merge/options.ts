/**
 * The flags of `deno task merge`.
 *
 * @module
 */

import { _parseFlags } from "../_flags.ts";

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

/** The `--help` text of `deno task merge`. */
export const MERGE_HELP = `Merge a LoRA adapter into its base model: W' = deq(NF4(W)) + s·B·A.

Usage: deno task merge --model DIR --adapter DIR --out DIR [--dtype bf16|f32] [--quantize]

The adapter was trained against the NF4-quantized base, so every projection is written as its NF4 round trip
(plus the adapter's update where it has one), as PEFT's merge_and_unload does on a 4-bit model.

Options:
  --model DIR              the base model folder (safetensors, plain or bitsandbytes 4-bit)
  --adapter DIR            the PEFT adapter folder (e.g. the --out of deno task finetune)
  --out DIR                the merged model folder (config, tokenizer and safetensors files)
  --dtype D                bf16 (default) or f32
  --quantize               quantize the merged model to NF4 (bitsandbytes 4-bit folder)
  -h, --help               this text
`;

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
  const s = "string";
  const f = _parseFlags(args, { model: s, adapter: s, out: s, dtype: s, quantize: "boolean" });
  if (f.help) return null;
  return {
    model: f.required("model"),
    adapter: f.required("adapter"),
    out: f.required("out"),
    dtype: f.oneOf("dtype", "bf16", ["bf16", "f32"]),
    quantize: f.bool("quantize"),
  };
}
