/**
 * Turns data records into token ids and labels, as Hugging Face trainers do.
 *
 * - `text`: the tokenizer's post-processor (BOS where `tokenizer.json` says so), then EOS appended when the
 *   tokenizer defines one (and the post-processor did not already end with it); loss on every token.
 * - `prompt`/`completion`: the same on `prompt + completion`; loss on the completion only.
 * - `messages`: rendered with the chat template and encoded without the post-processor (templates write their own
 *   BOS and turn ends, as `apply_chat_template` does); loss on assistant turns only, from the turn's content through
 *   its end-of-turn token (TRL's assistant masks, `{% generation %}` around them). No EOS is appended.
 *
 * Labels follow the Hugging Face causal-LM convention: `labels` is aligned with `inputIds`, masked positions are
 * -100, and the model shifts (position `t` predicts `labels[t+1]`), so an example of `L` tokens has at most `L-1`
 * targets. A token is trained on when it holds at least one character of the trained span: the span's first token
 * is the first token where the encoding of the text before the span stops matching the full encoding (so a BPE
 * merge across the boundary is trained on), and its end is found the same way from the text up to the span's end.
 * Assistant spans are character ranges of the full render (see {@linkcode assistantSpans}), so templates that
 * render a turn differently once later turns follow (Qwen3 drops the `<think>` block of earlier turns) still work.
 *
 * @module
 */

import type { TextTokenizer } from "../io/tokenizer.ts";
import { IGNORE_INDEX } from "../model/batch.ts";
import type { DataRecord } from "./records.ts";
import { assistantSpans } from "./assistant_spans.ts";

/** One tokenized example. */
export interface Example {
  /** Token ids. */
  inputIds: Int32Array;
  /** Aligned labels: the id where trained on, -100 elsewhere (the model shifts them). */
  labels: Int32Array;
  /** Positions in the loss: `t ≥ 1` with `labels[t] ≠ -100`. */
  targets: number;
  /** Line of the record in its file. */
  line: number;
}

/** Tokenized data with what was cut or skipped. */
export interface TokenizedData {
  /** Examples with at least one target, in record order. */
  examples: Example[];
  /** Examples cut to `maxSeqLen` tokens. */
  truncated: number;
  /** Tokens cut off by truncation, all examples (of a text too long to tokenize whole, those of its prefix). */
  truncatedTokens: number;
  /** Truncated examples whose text was tokenized only as far as `maxSeqLen` needs, so `truncatedTokens` is a floor. */
  truncatedUncounted?: number;
  /** Lines of examples skipped because no target was left (after truncation, or an empty completion). */
  skippedLines: number[];
  /** Targets in all examples. */
  targets: number;
}

/**
 * Tokenizes one record (no truncation).
 *
 * @param tok The tokenizer.
 * @param record The record.
 * @returns Ids and aligned labels (-100 where not trained on).
 * @throws {Error} For a chat record when the tokenizer has no chat template, the template fails, or an assistant
 *   turn cannot be found in the render; the message names the data file (when the record has one) and line.
 *
 * @example Prompt and completion
 * ```ts
 * import { TextTokenizer } from "@qlora/webgpu";
 * import { tokenizeRecord } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * const vocab = { "</s>": 0, a: 1, b: 2 };
 * const tok = new TextTokenizer({
 *   tokenizer: { model: { type: "BPE", vocab, merges: [] } }, tokenizerConfig: { eos_token: "</s>" },
 * });
 * const ex = tokenizeRecord(tok, { kind: "prompt", line: 1, prompt: "ab", completion: "b" });
 * assert.deepEqual([...ex.inputIds], [1, 2, 2, 0]);
 * assert.deepEqual([...ex.labels], [-100, -100, 2, 0]);
 * ```
 */
export function tokenizeRecord(tok: TextTokenizer, record: DataRecord): Example {
  return _tokenize(tok, record, Infinity).example;
}

/** Extra tokens tokenized past `maxSeqLen`: a cut text changes only its last few tokens, never the kept ones. */
const _CUT_MARGIN_TOKENS = 16;

/**
 * Tokenizes a record's text up to `maxChars` characters (its rendered text, for chat records); `cut` says that
 * the text was longer, so the ids are those of a prefix (no EOS appended) and the example is to be truncated.
 */
function _tokenize(tok: TextTokenizer, record: DataRecord, maxChars: number): { example: Example; cut: boolean } {
  let ids: number[];
  let spans: [number, number][]; // trained token ranges
  let cut: boolean;
  if (record.kind === "text") {
    cut = record.text.length > maxChars;
    ids = tok.encode(cut ? record.text.slice(0, maxChars) : record.text);
    if (!cut) _withEos(tok, ids);
    spans = [[0, ids.length]];
  } else if (record.kind === "prompt") {
    const full = record.prompt + record.completion;
    cut = full.length > maxChars;
    ids = tok.encode(cut ? full.slice(0, maxChars) : full);
    if (!cut) _withEos(tok, ids);
    spans = [[_startToken(tok, full.slice(0, Math.min(record.prompt.length, maxChars)), ids, true), ids.length]];
  } else {
    const where = record.file === undefined ? `line ${record.line}` : `${record.file}:${record.line}`;
    const text = tok.applyChatTemplate(record.messages, false, where);
    cut = text.length > maxChars;
    ids = tok.encode(cut ? text.slice(0, maxChars) : text, { addSpecialTokens: false });
    spans = assistantSpans(text, record.messages, tok.specialTokens, where).map(([s, e]) =>
      s >= maxChars ? [ids.length, ids.length] : [
        _startToken(tok, text.slice(0, s), ids, false),
        _endToken(tok, text.slice(0, Math.min(e, maxChars)), ids),
      ]
    );
  }
  const labels = new Int32Array(ids.length).fill(IGNORE_INDEX);
  for (const [s, e] of spans) for (let t = s; t < e; t++) labels[t] = ids[t];
  return { example: { inputIds: Int32Array.from(ids), labels, targets: _targets(labels), line: record.line }, cut };
}

/**
 * Tokenizes records, truncating each example to `maxSeqLen` tokens (counted, not silent) and skipping examples
 * left with no target. The work per record is bounded by `maxSeqLen`: a text longer than `maxSeqLen` (plus a
 * margin) tokens could fill is tokenized only that far (no token covers more than `tok.maxTokenChars` characters),
 * so one huge line costs no more than a long example.
 *
 * @param tok The tokenizer.
 * @param records The records.
 * @param maxSeqLen Longest example kept, in tokens (default: no limit).
 * @returns The examples and what was cut or skipped.
 * @throws {Error} If no example has a target.
 *
 * @example Truncation is counted
 * ```ts
 * import { TextTokenizer } from "@qlora/webgpu";
 * import { tokenizeData } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * const tok = new TextTokenizer({ tokenizer: { model: { type: "BPE", vocab: { a: 0 }, merges: [] } } });
 * const data = tokenizeData(tok, [{ kind: "text", line: 1, text: "aaaa" }], 3);
 * assert.equal(data.truncated, 1);
 * assert.equal(data.truncatedTokens, 1);
 * assert.equal(data.examples[0].targets, 2);
 * ```
 */
export function tokenizeData(tok: TextTokenizer, records: readonly DataRecord[], maxSeqLen = Infinity): TokenizedData {
  const out: TokenizedData = { examples: [], truncated: 0, truncatedTokens: 0, skippedLines: [], targets: 0 };
  const maxChars = (maxSeqLen + _CUT_MARGIN_TOKENS) * tok.maxTokenChars;
  for (const record of records) {
    let r = _tokenize(tok, record, maxChars);
    // A normalizer that merges characters could leave the prefix short of the margin: then the whole text.
    if (r.cut && r.example.inputIds.length < maxSeqLen + _CUT_MARGIN_TOKENS / 2) r = _tokenize(tok, record, Infinity);
    if (r.cut) out.truncatedUncounted = (out.truncatedUncounted ?? 0) + 1;
    let ex = r.example;
    if (ex.inputIds.length > maxSeqLen) {
      out.truncated++;
      out.truncatedTokens += ex.inputIds.length - maxSeqLen;
      const labels = ex.labels.slice(0, maxSeqLen);
      ex = { inputIds: ex.inputIds.slice(0, maxSeqLen), labels, targets: _targets(labels), line: ex.line };
    }
    if (ex.targets === 0) {
      out.skippedLines.push(ex.line);
      continue;
    }
    out.examples.push(ex);
    out.targets += ex.targets;
  }
  if (out.examples.length === 0) throw new Error("No example has a token to train on (see --max-seq-len)");
  return out;
}

/**
 * A one-line summary of truncation and skipped examples, for the log (empty when nothing was cut).
 *
 * @param data The tokenized data.
 * @param maxSeqLen The limit used.
 * @returns The message, or "".
 *
 * @example
 * ```ts
 * import { truncationReport } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * const data = { examples: [], truncated: 2, truncatedTokens: 9, skippedLines: [7], targets: 0 };
 * assert.match(truncationReport(data, 512), /2 examples truncated to 512 tokens/);
 * ```
 */
export function truncationReport(data: TokenizedData, maxSeqLen: number): string {
  const parts: string[] = [];
  if (data.truncated > 0) {
    const atLeast = data.truncatedUncounted ? "at least " : "";
    parts.push(
      `${data.truncated} examples truncated to ${maxSeqLen} tokens (${atLeast}${data.truncatedTokens} tokens cut)`,
    );
  }
  if (data.skippedLines.length > 0) {
    const shown = data.skippedLines.slice(0, 10).join(", ") + (data.skippedLines.length > 10 ? ", …" : "");
    parts.push(`${data.skippedLines.length} examples skipped with no token to train on (lines ${shown})`);
  }
  return parts.join("; ");
}

function _withEos(tok: TextTokenizer, ids: number[]): number[] {
  if (tok.eosId !== null && ids[ids.length - 1] !== tok.eosId) ids.push(tok.eosId);
  return ids;
}

/** The first token of `ids` that holds text past `prefix`: where the encoding of `prefix` stops matching. */
function _startToken(tok: TextTokenizer, prefix: string, ids: readonly number[], special: boolean): number {
  return _commonPrefix(tok.encode(prefix, { addSpecialTokens: special }), ids);
}

/** One past the last token of `ids` holding text of `upTo` (the encoding matches, or the next token straddles). */
function _endToken(tok: TextTokenizer, upTo: string, ids: readonly number[]): number {
  const p = tok.encode(upTo, { addSpecialTokens: false });
  const n = _commonPrefix(p, ids);
  return n === p.length ? n : Math.min(n + 1, ids.length);
}

function _commonPrefix(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}

function _targets(labels: Int32Array): number {
  let n = 0;
  for (let t = 1; t < labels.length; t++) if (labels[t] !== IGNORE_INDEX) n++;
  return n;
}
