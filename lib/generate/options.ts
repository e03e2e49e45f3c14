/**
 * The flags of `deno task generate`: one table, from which the parser, the defaults, `--help` and the README's list
 * come.
 *
 * @module
 */

import {
  bytesFlag,
  flagHelp,
  type FlagTable,
  intFlag,
  numberFlag,
  parseFlags,
  switchFlag,
  textFlag,
} from "../flags.ts";

/** Options of a `deno task generate` run. */
export interface GenerateCliOptions {
  /** Model folder (plain safetensors, quantized to NF4 on load, or bitsandbytes 4-bit). */
  model: string;
  /** PEFT adapter folder, or null. */
  adapter: string | null;
  /** The prompt (the user turn with `chat`). */
  prompt: string;
  /** Most tokens to generate. */
  maxNewTokens: number;
  /** Sampling temperature; 0 is greedy. */
  temperature: number;
  /** Top-p nucleus mass. */
  topP: number;
  /** Sampling seed. */
  seed: number;
  /** Render the prompt as a user turn with the model's chat template. */
  chat: boolean;
  /** GPU memory budget in bytes, or null (the adapter's limits). */
  gpuMemory: number | null;
  /** LLM-QAT bits (`w4a8kv4`) to run the dense model fake-quantized at, or null (NF4). */
  fakeQuant: string | null;
}

/** The flags of `deno task generate`, checked by the compiler against {@linkcode GenerateCliOptions}. */
export const GENERATE_FLAGS: FlagTable<GenerateCliOptions> = {
  model: textFlag("DIR", "Hugging Face model folder (safetensors; bitsandbytes 4-bit folders too)", { required: true }),
  adapter: textFlag("DIR", "PEFT LoRA adapter folder (e.g. the --out of deno task finetune)"),
  prompt: textFlag("TEXT", "the prompt (encoded with the tokenizer's special tokens, e.g. BOS)", { required: true }),
  maxNewTokens: intFlag("N", "most tokens to generate", { min: 1, default: 128 }),
  temperature: numberFlag("T", "0 = greedy; > 0 samples from softmax(logits / T)", {
    default: 0,
    check: (x) => x >= 0,
    what: "a number ≥ 0",
  }),
  topP: numberFlag("P", "nucleus sampling mass in (0, 1]", {
    default: 1,
    check: (x) => x > 0 && x <= 1,
    what: "a number in (0, 1]",
  }),
  seed: intFlag("N", "seed of the sampling", { min: 0, default: 0 }),
  chat: switchFlag("render the prompt as a user turn with the model's chat template"),
  gpuMemory: bytesFlag("BYTES", "cap accounted GPU memory: 512MiB, 6GiB", "adapter limit"),
  fakeQuant: textFlag("WAKV", "run the dense f32 model fake-quantized as LLM-QAT trains it: w4a8kv4, w8a8kv8, …"),
};

/** The `--help` text of `deno task generate`. */
export const GENERATE_HELP: string =
  `Generate text with a Llama-family model (NF4 weights), optionally with a LoRA adapter.

Usage: deno task generate --model DIR --prompt TEXT [options]

Options:
${flagHelp(GENERATE_FLAGS)}`;

/**
 * Parses `deno task generate` flags.
 *
 * @param args The arguments (`Deno.args`).
 * @returns `null` for `--help`, else the options with defaults filled in.
 * @throws {Error} Naming the flag for an unknown flag, a missing `--model`/`--prompt`, or a bad value.
 *
 * @example
 * ```ts
 * import { parseGenerateArgs } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const o = parseGenerateArgs(["--model", "m", "--prompt", "Hi", "--temperature", "0.7"]);
 * assert.equal(o?.temperature, 0.7);
 * assert.equal(o?.maxNewTokens, 128);
 * assert.throws(() => parseGenerateArgs(["--model", "m"]), /--prompt is required/);
 * ```
 */
export function parseGenerateArgs(args: readonly string[]): GenerateCliOptions | null {
  return parseFlags(GENERATE_FLAGS, args);
}
