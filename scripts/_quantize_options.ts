/**
 * The flags of `deno task quantize`: one table, from which the parser, `--help` and the README's list come.
 *
 * @module
 */

import { bytesFlag, flagHelp, type FlagTable, intFlag, listFlag, switchFlag, textFlag } from "../lib/flags.ts";
import { DEFAULT_QUANTIZED_MODULES } from "../lib/io/bnb_format.ts";

/** Options of a `deno task quantize` run. */
export interface QuantizeCliOptions {
  /** Input checkpoint folder. */
  model: string;
  /** Output folder. */
  out: string;
  /** Values per quantization block. */
  blockSize: number;
  /** Double quantization of the absmax values. */
  doubleQuant: boolean;
  /** Module names to quantize. */
  modules: string[];
  /** GPU memory budget in bytes, or null (the adapter's limits). */
  gpuMemory: number | null;
}

/**
 * The flags of `deno task quantize`.
 *
 * @example
 * ```ts
 * import { parseFlags } from "../lib/flags.ts";
 * import { QUANTIZE_FLAGS } from "./_quantize_options.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parseFlags(QUANTIZE_FLAGS, ["--model", "m", "--out", "o"])?.blockSize, 64);
 * assert.throws(() => parseFlags(QUANTIZE_FLAGS, ["--out", "o"]), /--model IN is required/);
 * assert.throws(() => parseFlags(QUANTIZE_FLAGS, ["--model", "m", "--out", "o", "--block-size", "96"]), /power of two/);
 * ```
 */
export const QUANTIZE_FLAGS: FlagTable<QuantizeCliOptions> = {
  model: textFlag("IN", "input checkpoint folder", { required: "a folder of .safetensors files" }),
  out: textFlag("OUT", "output folder (created)", { required: "the output folder" }),
  blockSize: intFlag("N", "values per quantization block, a power of two ≥ 64", {
    min: 64,
    default: 64,
    check: (x) => (x & (x - 1)) === 0,
    what: "a power of two ≥ 64",
  }),
  doubleQuant: switchFlag("keep absmax in float32 (default: double quantization)", { negated: true }),
  modules: listFlag("LIST", "comma-separated module names to quantize", {
    default: DEFAULT_QUANTIZED_MODULES,
    empty: "at least one module name",
  }),
  gpuMemory: bytesFlag("BYTES", "GPU memory budget, e.g. 6GiB", "adapter limit"),
};

/** The text of `deno task quantize --help`. */
export const QUANTIZE_HELP: string = `Usage: deno task quantize --model IN --out OUT [options]

Quantizes the 2-D weights of the decoder's linear layers to NF4 (bitsandbytes 4-bit format) and copies every
other tensor and file. IN is a folder of .safetensors files (sharded or not; config.json optional).

Options:
${flagHelp(QUANTIZE_FLAGS)}`;
