/**
 * The flags of `deno task generate`.
 *
 * @module
 */

import { _parseFlags } from "../_flags.ts";

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
}

/** The `--help` text of `deno task generate`. */
export const GENERATE_HELP = `Generate text with a Llama-family model (NF4 weights), optionally with a LoRA adapter.

Usage: deno task generate --model DIR --prompt TEXT [options]

Options:
  --model DIR              Hugging Face model folder (safetensors; bitsandbytes 4-bit folders too)
  --adapter DIR            PEFT LoRA adapter folder (e.g. the --out of deno task finetune)
  --prompt TEXT            the prompt (encoded with the tokenizer's special tokens, e.g. BOS)
  --chat                   render the prompt as a user turn with the model's chat template
  --max-new-tokens N       most tokens to generate (128)
  --temperature T          0 = greedy (default); > 0 samples from softmax(logits / T)
  --top-p P                nucleus sampling mass in (0, 1] (1)
  --seed N                 seed of the sampling (0)
  --gpu-memory BYTES       cap accounted GPU memory: 512MiB, 6GiB (adapter limit)
  -h, --help               this text
`;

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
  const s = "string";
  const f = _parseFlags(args, {
    model: s,
    adapter: s,
    prompt: s,
    "max-new-tokens": s,
    temperature: s,
    "top-p": s,
    seed: s,
    chat: "boolean",
    "gpu-memory": s,
  });
  if (f.help) return null;
  return {
    model: f.required("model"),
    adapter: f.str("adapter") ?? null,
    prompt: f.required("prompt"),
    maxNewTokens: f.int("max-new-tokens", 128, 1),
    temperature: f.num("temperature", 0, (x) => x >= 0, "a number ≥ 0"),
    topP: f.num("top-p", 1, (x) => x > 0 && x <= 1, "a number in (0, 1]"),
    seed: f.int("seed", 0, 0),
    chat: f.bool("chat"),
    gpuMemory: f.bytes("gpu-memory"),
  };
}
