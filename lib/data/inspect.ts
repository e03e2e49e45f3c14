/**
 * What the trainer would train on, before a GPU is touched (`deno task inspect-data`): the data tokenized by the
 * trainer's own {@linkcode tokenizeData}, examples shown with their trained tokens highlighted, the counts, and
 * the examples as JSON Lines of `input_ids` and `labels`.
 *
 * @module
 */

import type { TextTokenizer } from "../io/tokenizer.ts";
import { IGNORE_INDEX } from "../model/batch.ts";
import { type Example, tokenizeData, type TokenizedData, truncationReport } from "./examples.ts";
import type { DataRecord } from "./records.ts";

/** The tokenized data with its counts. */
export interface DataInspection {
  /** Records in the file. */
  records: number;
  /** The examples and what was cut or skipped, exactly as the trainer gets them. */
  data: TokenizedData;
  /** Tokens in the kept examples (after truncation). */
  tokens: number;
  /** Trained tokens: positions in the loss (a label at `t ≥ 1`, the model shifts). */
  trainedTokens: number;
  /** The truncation limit used. */
  maxSeqLen: number;
}

/**
 * Tokenizes records as the trainer does and counts.
 *
 * @param tok The model's tokenizer.
 * @param records The data records.
 * @param maxSeqLen Longest example kept, in tokens (default: no limit).
 * @returns The examples and counts.
 * @throws {Error} As {@linkcode tokenizeData} (a chat template error, no example with a token to train on).
 *
 * @example
 * ```ts
 * import { TextTokenizer } from "@qlora/webgpu";
 * import { inspectData } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * const tok = new TextTokenizer({
 *   tokenizer: { model: { type: "BPE", vocab: { "</s>": 0, a: 1, b: 2 }, merges: [] } },
 *   tokenizerConfig: { eos_token: "</s>" },
 * });
 * const ins = inspectData(tok, [{ kind: "prompt", line: 1, prompt: "aa", completion: "b" }]);
 * assert.deepEqual([ins.records, ins.tokens, ins.trainedTokens], [1, 4, 2]);
 * ```
 */
export function inspectData(tok: TextTokenizer, records: readonly DataRecord[], maxSeqLen = Infinity): DataInspection {
  const data = tokenizeData(tok, records, maxSeqLen);
  const tokens = data.examples.reduce((n, e) => n + e.inputIds.length, 0);
  return { records: records.length, data, tokens, trainedTokens: data.targets, maxSeqLen };
}

/**
 * An example as text with its trained tokens marked: runs of trained tokens in ANSI reverse green (`color`) or
 * between `[[` and `]]`. Each run is decoded as a whole (special tokens shown), so characters split over tokens
 * stay whole.
 *
 * @param tok The tokenizer.
 * @param example The example.
 * @param color Use ANSI colour (for a terminal) rather than `[[…]]` markers.
 * @returns The marked text.
 *
 * @example
 * ```ts
 * import { TextTokenizer } from "@qlora/webgpu";
 * import { showExample } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * const model = { type: "BPE", vocab: { a: 0, b: 1 }, merges: [] };
 * const tok = new TextTokenizer({ tokenizer: { model, decoder: { type: "Fuse" } } });
 * const ex = { inputIds: Int32Array.from([0, 0, 1]), labels: Int32Array.from([-100, -100, 1]), targets: 1, line: 1 };
 * assert.equal(showExample(tok, ex, false), "aa[[b]]");
 * ```
 */
export function showExample(tok: TextTokenizer, example: Example, color: boolean): string {
  const [open, close] = color ? ["\x1b[7;32m", "\x1b[0m"] : ["[[", "]]"];
  let out = "";
  let start = 0;
  const ids = [...example.inputIds];
  const trained = (t: number) => example.labels[t] !== IGNORE_INDEX;
  for (let t = 1; t <= ids.length; t++) {
    if (t < ids.length && trained(t) === trained(start)) continue;
    const text = tok.decode(ids.slice(start, t));
    out += trained(start) ? open + text + close : text;
    start = t;
  }
  return out;
}

/**
 * The counts of an inspection, one per line: examples, tokens, trained tokens, truncated and dropped examples.
 *
 * @param ins The inspection.
 * @returns The lines.
 *
 * @example
 * ```ts
 * import { inspectionSummary } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * const data = { examples: [], truncated: 1, truncatedTokens: 3, skippedLines: [4], targets: 7 };
 * const text = inspectionSummary({ records: 5, data, tokens: 20, trainedTokens: 7, maxSeqLen: 8 });
 * assert.match(text, /trained tokens: +7 \(35\.0% of tokens\)/);
 * assert.match(text, /dropped: +1/);
 * ```
 */
export function inspectionSummary(ins: DataInspection): string {
  const { data } = ins;
  const pct = ins.tokens === 0 ? 0 : (100 * ins.trainedTokens) / ins.tokens;
  const rows: [string, string][] = [
    ["records", `${ins.records}`],
    ["examples", `${data.examples.length}`],
    ["tokens", `${ins.tokens}`],
    ["trained tokens", `${ins.trainedTokens} (${pct.toFixed(1)}% of tokens)`],
    ["truncated", `${data.truncated} (${data.truncatedTokens} tokens cut, --max-seq-len ${ins.maxSeqLen})`],
    ["dropped", `${data.skippedLines.length} (no token left to train on)`],
  ];
  const lines = rows.map(([k, v]) => `${(k + ":").padEnd(16)}${v}`);
  const report = truncationReport(data, ins.maxSeqLen);
  return [...lines, ...(report ? [report] : [])].join("\n");
}

/**
 * The examples as JSON Lines, one `{"input_ids": [...], "labels": [...]}` per example (labels -100 where not
 * trained, aligned with the ids as in transformers).
 *
 * @param examples The examples.
 * @returns The text, one line per example, each ending in a newline.
 *
 * @example
 * ```ts
 * import { examplesJsonl } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * const ex = { inputIds: Int32Array.from([5, 6]), labels: Int32Array.from([-100, 6]), targets: 1, line: 1 };
 * assert.equal(examplesJsonl([ex]), '{"input_ids":[5,6],"labels":[-100,6]}\n');
 * ```
 */
export function examplesJsonl(examples: readonly Example[]): string {
  return examples.map((e) => JSON.stringify({ input_ids: [...e.inputIds], labels: [...e.labels] }) + "\n").join("");
}
