/**
 * The tokenizer files of the tiny test model: a byte-level BPE with no merges (one token per UTF-8 byte, so any
 * text round-trips), four specials, a post-processor that adds BOS, and a Llama-2-style chat template. Loads with
 * `@huggingface/tokenizers` and with transformers' `PreTrainedTokenizerFast`.
 *
 * @module
 */

/** Special tokens of the tiny tokenizer, by id: `<unk>` 0, `<s>` 1 (BOS), `</s>` 2 (EOS), `<pad>` 3. */
export const TINY_SPECIAL_TOKENS: readonly string[] = ["<unk>", "<s>", "</s>", "<pad>"];

/** Tokens in the tiny tokenizer: the specials, then one per byte (byte `b` is id `4 + b`). */
export const TINY_TOKENIZER_SIZE: number = TINY_SPECIAL_TOKENS.length + 256;

/** Llama-2-style chat template: BOS, `[INST] user [/INST]`, ` assistant</s>`, system in `<<SYS>>`. */
export const TINY_CHAT_TEMPLATE: string = "{{ bos_token }}{% for message in messages %}" +
  "{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}" +
  "{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}" +
  "{% endif %}{% endfor %}";

/** The JSON files of a tokenizer, by file name. */
export interface TinyTokenizerFiles {
  /** `tokenizer.json`. */
  "tokenizer.json": Record<string, unknown>;
  /** `tokenizer_config.json`. */
  "tokenizer_config.json": Record<string, unknown>;
  /** `special_tokens_map.json`. */
  "special_tokens_map.json": Record<string, unknown>;
}

/**
 * Builds the tiny tokenizer's files.
 *
 * @param maxLength `model_max_length` in `tokenizer_config.json`.
 * @returns The three JSON objects, keyed by file name.
 *
 * @example
 * ```ts
 * import { TINY_TOKENIZER_SIZE, tinyTokenizerFiles } from "@qlora/webgpu/testing";
 * import assert from "node:assert/strict";
 * const files = tinyTokenizerFiles();
 * const model = files["tokenizer.json"].model as { vocab: Record<string, number> };
 * assert.equal(Object.keys(model.vocab).length, TINY_TOKENIZER_SIZE);
 * ```
 */
export function tinyTokenizerFiles(maxLength = 256): TinyTokenizerFiles {
  const vocab: Record<string, number> = {};
  TINY_SPECIAL_TOKENS.forEach((t, id) => vocab[t] = id);
  _byteChars().forEach((c, b) => vocab[c] = TINY_SPECIAL_TOKENS.length + b);
  const addedToken = (content: string, id: number) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  const bos = { SpecialToken: { id: "<s>", type_id: 0 } };
  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: TINY_SPECIAL_TOKENS.map((t, id) => addedToken(t, id)),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
    post_processor: {
      type: "TemplateProcessing",
      single: [bos, { Sequence: { id: "A", type_id: 0 } }],
      pair: [bos, { Sequence: { id: "A", type_id: 0 } }, bos, { Sequence: { id: "B", type_id: 1 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
  const specials = { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", pad_token: "<pad>" };
  const tokenizerConfig = {
    add_bos_token: true,
    add_eos_token: false,
    added_tokens_decoder: Object.fromEntries(TINY_SPECIAL_TOKENS.map((t, id) => {
      const { id: _, ...rest } = addedToken(t, id);
      return [String(id), rest];
    })),
    ...specials,
    chat_template: TINY_CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    model_max_length: maxLength,
    tokenizer_class: "PreTrainedTokenizerFast",
  };
  return {
    "tokenizer.json": tokenizer,
    "tokenizer_config.json": tokenizerConfig,
    "special_tokens_map.json": specials,
  };
}

/** GPT-2's byte-to-character table: printable bytes map to themselves, the rest to U+0100 onwards. */
function _byteChars(): string[] {
  const chars: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    chars.push(String.fromCodePoint(printable ? b : 256 + extra++));
  }
  return chars;
}
