/**
 * LLM-QAT's data-free data: the full-precision model writes its own training text. Sequence `i` starts from token
 * id `i mod V` (the start tokens cover the vocabulary), its next 3–5 tokens are greedy (top-1), the rest sampled
 * from the softmax, up to `maxLen` tokens. Generation is batched with a KV cache; the JSONL output (one
 * `{"sample", "ids", "text"}` per line) is appended batch by batch, so a killed run resumes where it stopped.
 *
 * @module
 */

import type { Example } from "../data/examples.ts";
import { _writeAll } from "../io/_file.ts";
import type { TextTokenizer } from "../io/tokenizer.ts";
import type { LlamaModel } from "../model/llama.ts";
import { deriveSeed, Rng } from "../random.ts";
import { argmax, sampleToken } from "../generate/sampling.ts";
import { storage } from "../platform/storage.ts";

/** Options of {@linkcode generateQatData}. */
export interface QatDataOptions {
  /** Output JSONL (appended to; samples already there are skipped). */
  out: string;
  /** Sequences in all. */
  samples: number;
  /** Tokens per sequence, start token included. */
  maxLen: number;
  /** Sequences generated together. */
  batchSize: number;
  /** Sampling seed (default 0). */
  seed?: number;
  /** Called after each batch with the samples written so far. */
  onProgress?: (done: number) => void;
}

/** One generated sequence as stored. */
interface _Line {
  sample: number;
  ids: number[];
  text?: string;
}

/**
 * The complete lines of a generated file (a torn last line, from a killed run, is cut off the file).
 *
 * @param path The JSONL file (missing: none).
 * @returns The sequences in file order.
 */
async function _readLines(path: string, repair: boolean): Promise<_Line[]> {
  let text: string;
  try {
    text = await storage().readTextFile(path);
  } catch (e) {
    if (storage().isNotFound(e)) return [];
    throw e;
  }
  const end = text.lastIndexOf("\n") + 1;
  if (repair && end < text.length) await storage().truncate(path, new TextEncoder().encode(text.slice(0, end)).length);
  return text.slice(0, end).split("\n").filter((l) => l.trim()).map((l, i) => {
    const v = JSON.parse(l);
    if (!Array.isArray(v.ids)) throw new Error(`${path}:${i + 1}: no "ids" array of token ids`);
    return v as _Line;
  });
}

/**
 * Generates LLM-QAT's training sequences with `model` into `options.out`, resuming after the samples already
 * there.
 *
 * @param model The full-precision model.
 * @param tok Its tokenizer (for the `text` field).
 * @param options Output, counts, length, batch size, seed, progress callback.
 * @returns The samples in the file.
 *
 * @example Four sequences of six tokens, then a resumed call that has nothing left to do
 * ```ts
 * import { LlamaModel, loadTokenizer, requestGpu } from "@qlora/webgpu";
 * import { generateQatData } from "@qlora/webgpu/qat";
 * import { writeTinyLlama } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeTinyLlama(dir, { layers: 1 });
 * const model = await LlamaModel.load(await requestGpu(), dir, { lora: null });
 * const opts = { out: `${dir}/gen.jsonl`, samples: 4, maxLen: 6, batchSize: 2 };
 * assert.equal(await generateQatData(model, await loadTokenizer(dir), opts), 4);
 * const lines = (await Deno.readTextFile(opts.out)).trim().split("\n").map((l) => JSON.parse(l));
 * assert.deepEqual(lines.map((l) => l.ids[0]), [0, 1, 2, 3]);
 * assert.ok(lines.every((l) => l.ids.length === 6));
 * model.destroy();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function generateQatData(model: LlamaModel, tok: TextTokenizer, options: QatDataOptions): Promise<number> {
  const { samples, maxLen, batchSize, seed = 0 } = options;
  const V = model.config.vocabSize;
  if (maxLen < 2 || maxLen > model.config.maxPositionEmbeddings) {
    throw new RangeError(`--max-len ${maxLen} is outside [2, ${model.config.maxPositionEmbeddings}] (the context)`);
  }
  let done = (await _readLines(options.out, true)).length;
  while (done < samples) {
    const B = Math.min(batchSize, samples - done);
    const seqs = Array.from({ length: B }, (_, b) => [(done + b) % V]);
    // Per sample: its own generator and greedy prefix, so a resumed run writes the same sequences.
    const rngs = seqs.map((_, b) => new Rng(deriveSeed(seed, done + b)));
    const greedy = rngs.map((r) => 3 + r.int(3));
    const cache = model.createKvCache(B, maxLen - 1);
    try {
      let logits = await model.prefill(cache, {
        batchSize: B,
        seqLen: 1,
        inputIds: Int32Array.from(seqs, (s) => s[0]),
      });
      for (let t = 1; t < maxLen; t++) {
        for (let b = 0; b < B; b++) {
          const row = logits.subarray(b * V, (b + 1) * V);
          seqs[b].push(t <= greedy[b] ? argmax(row) : sampleToken(row, rngs[b], { temperature: 1 }));
        }
        if (t + 1 < maxLen) logits = await model.decodeStep(cache, Int32Array.from(seqs, (s) => s[t]));
      }
    } finally {
      cache.destroy();
    }
    const lines = seqs.map((ids, b) => JSON.stringify({ sample: done + b, ids, text: tok.decode(ids) }) + "\n");
    // One write per batch through an open file: a kill tears at most the last line, cut off by the next run. With
    // no complete line yet the file is empty (or missing), so it is created afresh.
    const f = await storage().openWrite(options.out, { append: done > 0 });
    try {
      await _writeAll(f, new TextEncoder().encode(lines.join("")), options.out);
    } finally {
      f.close();
    }
    done += B;
    options.onProgress?.(done);
  }
  return done;
}

/**
 * Reads generated sequences as training examples: every token after the first is a target (cut to `maxSeqLen`).
 *
 * @param path JSONL written by {@linkcode generateQatData}.
 * @param maxSeqLen Longest sequence kept.
 * @returns The examples.
 * @throws {Error} If the file has no sequences of two tokens or more, naming it.
 *
 * @example
 * ```ts
 * import { readGeneratedExamples } from "@qlora/webgpu/qat";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile({ suffix: ".jsonl" });
 * await Deno.writeTextFile(path, '{"sample": 0, "ids": [5, 6, 7]}\n');
 * const [ex] = await readGeneratedExamples(path, 2);
 * assert.deepEqual([...ex.inputIds], [5, 6]);
 * assert.equal(ex.targets, 1);
 * ```
 */
export async function readGeneratedExamples(path: string, maxSeqLen: number): Promise<Example[]> {
  const out = (await _readLines(path, false)).map((l, i) => [l, i] as const).filter(([l]) => l.ids.length >= 2).map(
    ([l, i]) => {
      const ids = Int32Array.from(l.ids.slice(0, maxSeqLen));
      return { inputIds: ids, labels: ids.slice(), targets: ids.length - 1, line: i + 1 };
    },
  );
  if (out.length === 0) throw new Error(`${path}: no generated sequences of two tokens or more`);
  return out;
}
