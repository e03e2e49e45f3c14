/**
 * Exact-match accuracy of completions on held-out prompt/completion pairs (the demo's before/after figure).
 *
 * @module
 */

/** A held-out pair. */
export interface EvalPair {
  /** The prompt given to the model. */
  prompt: string;
  /** The expected completion. */
  completion: string;
}

/** Accuracy and what the model said. */
export interface EvalResult {
  /** Correct answers / all answers. */
  accuracy: number;
  /** Correct answers. */
  correct: number;
  /** Pairs evaluated. */
  total: number;
  /** Per pair: the model's output and whether it equals the expected completion. */
  outputs: { prompt: string; expected: string; output: string; correct: boolean }[];
}

/**
 * Runs `complete` on each prompt and counts outputs exactly equal to the expected completion.
 *
 * @param pairs The held-out pairs.
 * @param complete The model's greedy completion of a prompt, special tokens left out, stopped at EOS (or at a
 *   token limit, which then shows as a wrong answer).
 * @returns The accuracy and every output.
 * @throws {Error} If there are no pairs.
 *
 * @example
 * ```ts
 * import { exactMatchAccuracy } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * const pairs = [{ prompt: "abc=", completion: "cba" }, { prompt: "xy=", completion: "yx" }];
 * const r = await exactMatchAccuracy(pairs, (p) => [...p.slice(0, -1)].reverse().join("").slice(0, 2));
 * assert.equal(r.accuracy, 0.5);
 * ```
 */
export async function exactMatchAccuracy(
  pairs: readonly EvalPair[],
  complete: (prompt: string) => string | Promise<string>,
): Promise<EvalResult> {
  if (pairs.length === 0) throw new Error("Evaluation: no prompt/completion pairs");
  const outputs: EvalResult["outputs"] = [];
  for (const { prompt, completion } of pairs) {
    const output = await complete(prompt);
    outputs.push({ prompt, expected: completion, output, correct: output === completion });
  }
  const correct = outputs.filter((o) => o.correct).length;
  return { accuracy: correct / pairs.length, correct, total: pairs.length, outputs };
}
