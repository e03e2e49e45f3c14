/**
 * `deno task eval`: perplexity of a model over a data file's trained tokens, optionally fake-quantized as LLM-QAT
 * trains it, and the mean KL to a teacher (the distillation loss itself, at the same positions).
 *
 * @module
 */

import { readJsonl } from "../data/records.ts";
import { type Example, tokenizeData } from "../data/examples.ts";
import { loadTokenizer } from "../io/tokenizer.ts";
import { prepareTargets } from "../model/batch.ts";
import type { LlamaModel } from "../model/llama.ts";
import { readGeneratedExamples } from "./data.ts";
import { distillation } from "./distill.ts";
import { storage } from "../platform/storage.ts";

/** What {@linkcode evaluate} returns. */
export interface EvalReport {
  /** `exp(mean cross-entropy)` over the trained tokens. */
  perplexity: number;
  /** Tokens counted. */
  tokens: number;
  /** Mean `KL(teacher ‖ model)` per counted token, when a teacher was given. */
  kl?: number;
}

/**
 * The examples of a data file: generated token ids (`deno task qat-data`, lines with `ids`) as they are, or any
 * finetune data format tokenized as `deno task finetune` does (`lib/data`).
 *
 * @param path The JSONL file.
 * @param modelDir The model folder (its tokenizer).
 * @param maxSeqLen Longest sequence kept.
 * @returns The examples.
 */
export async function readEvalExamples(path: string, modelDir: string, maxSeqLen: number): Promise<Example[]> {
  const first = (await storage().readTextFile(path)).split("\n").find((l) => l.trim()) ?? "{}";
  if (Array.isArray(JSON.parse(first).ids)) return await readGeneratedExamples(path, maxSeqLen);
  return tokenizeData(await loadTokenizer(modelDir), await readJsonl(path), maxSeqLen).examples;
}

/**
 * Perplexity over the examples' trained tokens, one sequence at a time, and with a teacher the mean KL to it.
 *
 * @param model The model (e.g. loaded with `qat` bits to run fake-quantized).
 * @param examples The data.
 * @param teacher The full-precision teacher, or null.
 * @returns Perplexity, tokens and KL.
 *
 * @example The model is its own teacher: zero KL
 * ```ts
 * import { LlamaModel, requestGpu } from "@qlora/webgpu";
 * import { evaluate } from "@qlora/webgpu/qat";
 * import { parseQatBits } from "@qlora/webgpu/qlinear";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeTinyLlama(dir, { layers: 1 });
 * const model = await LlamaModel.load(await requestGpu(), dir, { lora: null, qat: { bits: parseQatBits("w16a16kv16") } });
 * const ids = new Int32Array([1, 5, 9, 13]);
 * const r = await evaluate(model, [{ inputIds: ids, labels: ids, targets: 3, line: 1 }], model);
 * assert.equal(r.tokens, 3);
 * assert.ok(r.perplexity > 1 && Math.abs(r.kl!) < 1e-5);
 * model.destroy();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function evaluate(
  model: LlamaModel,
  examples: readonly Example[],
  teacher: LlamaModel | null,
): Promise<EvalReport> {
  let ce = 0;
  let kl = 0;
  let tokens = 0;
  for (const ex of examples) {
    const batch = { batchSize: 1, seqLen: ex.inputIds.length, inputIds: ex.inputIds, labels: ex.labels };
    const r = await model.forward(batch);
    ce += r.lossSum;
    tokens += r.tokens;
    if (teacher) {
      const { targets } = prepareTargets(batch, model.config.vocabSize);
      kl += (await distillation(model, teacher, batch, model.hiddenStates(batch), targets, 0, false)).lossSum;
    }
  }
  const report: EvalReport = { perplexity: Math.exp(ce / Math.max(tokens, 1)), tokens };
  if (teacher) report.kl = kl / Math.max(tokens, 1);
  return report;
}
