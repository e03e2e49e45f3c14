// The tiny model's tokenizer files (byte-level: byte b is id 4 + b; <s> 1, </s> 2, <pad> 3) as TokenizerFiles.

import type { TokenizerFiles } from "../lib/io/tokenizer.ts";
import { tinyTokenizerFiles } from "../lib/testing/tiny_tokenizer.ts";

/** A fresh copy each call, so tests can edit it. */
export function tinyFiles(): TokenizerFiles {
  const f = structuredClone(tinyTokenizerFiles());
  return {
    tokenizer: f["tokenizer.json"],
    tokenizerConfig: f["tokenizer_config.json"],
    specialTokensMap: f["special_tokens_map.json"],
  };
}
