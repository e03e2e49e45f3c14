// A character-level tokenizer.json built in memory for tests: ids 0..2 are <unk>, <s>, </s>; then one id per
// character. The post-processor adds <s> (as Llama's tokenizer.json does).

import type { TokenizerFiles } from "../lib/io/tokenizer.ts";

/** Characters the test tokenizer knows. */
export const CHARS = " abcdefghijklmnopqrstuvwxyz0123456789=+:.,<>|/\n";

/**
 * Files of a char-level tokenizer.
 *
 * @param opts `bos`: add the TemplateProcessing post-processor; `chatTemplate`: a template for tokenizer_config.
 */
export function charTokenizerFiles(opts: { bos?: boolean; eos?: boolean; chatTemplate?: string } = {}): TokenizerFiles {
  const specials = ["<unk>", "<s>", "</s>"];
  const vocab: Record<string, number> = {};
  specials.forEach((s, i) => vocab[s] = i);
  for (const c of CHARS) vocab[c] = Object.keys(vocab).length;
  const bos = opts.bos ?? true;
  return {
    tokenizer: {
      version: "1.0",
      added_tokens: specials.map((content, id) => ({
        id,
        content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      })),
      normalizer: null,
      pre_tokenizer: null,
      post_processor: bos
        ? {
          type: "TemplateProcessing",
          single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
          pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
          special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
        }
        : null,
      decoder: { type: "Fuse" },
      model: { type: "BPE", vocab, merges: [], unk_token: "<unk>", byte_fallback: false },
    },
    tokenizerConfig: {
      bos_token: "<s>",
      ...(opts.eos ?? true ? { eos_token: "</s>" } : {}),
      unk_token: "<unk>",
      ...(opts.chatTemplate ? { chat_template: opts.chatTemplate } : {}),
    },
  };
}
