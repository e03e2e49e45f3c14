/**
 * The tokenizer of a Hugging Face model folder: `tokenizer.json` through `@huggingface/tokenizers`, special token
 * ids from `tokenizer_config.json`, `special_tokens_map.json` and `config.json`, and the chat template
 * (compiled when the tokenizer loads, see {@linkcode ChatTemplate}).
 *
 * @module
 */

import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { ChatTemplate } from "./chat_template.ts";
import { readJsonFile } from "./json_file.ts";
import { storage } from "../platform/storage.ts";

/** One chat turn, as in a `{"messages": [...]}` data line. */
export interface ChatMessage {
  /** `system`, `user`, `assistant` (or any role the chat template knows). */
  role: string;
  /** The text of the turn. */
  content: string;
}

/** The parsed JSON files of a model folder; only `tokenizer` is required. */
export interface TokenizerFiles {
  /** `tokenizer.json`. */
  tokenizer: Record<string, unknown>;
  /** `tokenizer_config.json` (special tokens, `chat_template`). */
  tokenizerConfig?: Record<string, unknown>;
  /** `special_tokens_map.json`. */
  specialTokensMap?: Record<string, unknown>;
  /** `config.json` of the model (`bos_token_id`, `eos_token_id`, `pad_token_id`). */
  config?: Record<string, unknown>;
  /** The model folder the files came from, for error messages (which then name `DIR/tokenizer.json`, ...). */
  dir?: string;
}

/** Options of {@linkcode TextTokenizer.encode}. */
export interface EncodeOptions {
  /** Run the tokenizer's post-processor (which adds BOS where `tokenizer.json` says so). Default true. */
  addSpecialTokens?: boolean;
}

/**
 * A text tokenizer with the special token ids a trainer and a generator need.
 *
 * Special ids come from the tokenizer's files first (`tokenizer_config.json`, then `special_tokens_map.json`),
 * then from the model's `config.json`; when none defines one it is `null` (no fallback to Llama's ids).
 *
 * @example Encode and decode with a tokenizer built in memory
 * ```ts
 * import { TextTokenizer } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const vocab = { "<s>": 0, "</s>": 1, a: 2, b: 3 };
 * const tok = new TextTokenizer({
 *   tokenizer: { model: { type: "BPE", vocab, merges: [] }, decoder: { type: "Fuse" } },
 *   config: { bos_token_id: 0, eos_token_id: 1 },
 * });
 * assert.deepEqual(tok.encode("ab"), [2, 3]);
 * assert.equal(tok.decode([2, 3]), "ab");
 * assert.equal(tok.eosId, 1);
 * ```
 */
export class TextTokenizer {
  /** Beginning-of-sequence id, or null when neither the tokenizer nor the config defines one. */
  readonly bosId: number | null;
  /** End-of-sequence id appended to training examples, or null when none is defined. */
  readonly eosId: number | null;
  /** Padding id (for right padding; padded positions are never attended to nor trained on): pad, else EOS, else 0. */
  readonly padId: number;
  /** Ids that end a generation: the EOS id plus every `eos_token_id` of `config.json`. */
  readonly stopIds: readonly number[];
  /** Number of ids (largest id + 1, added tokens included). */
  readonly vocabSize: number;
  /** Characters in the longest token string: no token covers more characters of a text (bounds prefixes). */
  readonly maxTokenChars: number;
  /** The chat template source, or null when `tokenizer_config.json` has none. */
  readonly chatTemplate: string | null;
  /** The strings of the special added tokens (BOS, EOS, turn markers, ...), which encode to one id each. */
  readonly specialTokens: readonly string[];
  #tok: HfTokenizer;
  #template: ChatTemplate | null;
  #tokenStrings: Record<string, string | null>;
  #special: Set<number>;

  /**
   * Builds the tokenizer from parsed files.
   *
   * @param files The parsed JSON files of the model folder.
   * @throws {Error} Naming the file at fault: `tokenizer.json` that is not usable or has a model type that
   *   `@huggingface/tokenizers` does not implement, a special token of `tokenizer_config.json` (or
   *   `special_tokens_map.json`) that is not in the vocabulary, a `chat_template` that does not compile.
   */
  constructor(files: TokenizerFiles) {
    const path = (name: string): string => files.dir === undefined ? name : `${files.dir}/${name}`;
    const where = path("tokenizer.json");
    const modelType = (files.tokenizer.model as { type?: unknown } | undefined)?.type;
    if (modelType !== undefined && !_MODEL_TYPES.includes(modelType as string)) {
      throw new Error(
        `${where}: model.type ${JSON.stringify(modelType)} is not supported; supported: ${_MODEL_TYPES.join(", ")}`,
      );
    }
    const tokCfg = files.tokenizerConfig ?? {};
    const map = files.specialTokensMap ?? {};
    const cfg = files.config ?? {};
    // tokenizers.js insists on these keys being present (null is fine).
    const json = {
      normalizer: null,
      pre_tokenizer: null,
      post_processor: null,
      decoder: null,
      added_tokens: [],
      ...files.tokenizer,
    };
    try {
      this.#tok = new HfTokenizer(json, tokCfg);
    } catch (e) {
      throw new Error(`${where}: cannot load the tokenizer: ${(e as Error).message}`);
    }
    this.#tokenStrings = {};
    const idOf = (name: "bos" | "eos" | "pad"): number | null => {
      const fromCfg = _tokenString(tokCfg[`${name}_token`]);
      const str = fromCfg ?? _tokenString(map[`${name}_token`]);
      this.#tokenStrings[name] = str;
      if (str !== null) {
        const id = this.#tok.token_to_id(str);
        if (id === undefined) {
          const file = path(fromCfg !== null ? "tokenizer_config.json" : "special_tokens_map.json");
          throw new Error(`${file}: ${name}_token "${str}" is not in its vocabulary (${where})`);
        }
        return id;
      }
      const fromConfig = cfg[`${name}_token_id`];
      const id = Array.isArray(fromConfig) ? fromConfig[0] : fromConfig;
      return typeof id === "number" ? id : null;
    };
    this.bosId = idOf("bos");
    this.eosId = idOf("eos");
    const pad = idOf("pad");
    this.padId = pad ?? this.eosId ?? 0;
    const cfgEos = cfg.eos_token_id;
    const stops = new Set<number>(this.eosId === null ? [] : [this.eosId]);
    for (const id of Array.isArray(cfgEos) ? cfgEos : [cfgEos]) if (typeof id === "number") stops.add(id);
    this.stopIds = [...stops];
    let maxId = -1;
    let maxChars = 1;
    for (const [str, id] of this.#tok.get_vocab(true)) {
      maxId = Math.max(maxId, id);
      maxChars = Math.max(maxChars, str.length);
    }
    this.vocabSize = maxId + 1;
    this.maxTokenChars = maxChars;
    const specials = [...this.#tok.get_added_tokens_decoder().entries()].filter(([, t]) => t.special);
    this.#special = new Set(specials.map(([i]) => i));
    this.specialTokens = specials.map(([, t]) => t.content);
    const tpl = tokCfg.chat_template;
    this.chatTemplate = typeof tpl === "string"
      ? tpl
      : Array.isArray(tpl)
      ? (tpl.find((t) => t?.name === "default")?.template ?? null)
      : null;
    this.#template = this.chatTemplate === null
      ? null
      : new ChatTemplate(this.chatTemplate, path("tokenizer_config.json"));
  }

  /**
   * Encodes text to ids.
   *
   * @param text The text.
   * @param options `addSpecialTokens` (default true) runs the tokenizer's post-processor.
   * @returns The ids.
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    return this.#tok.encode(text, { add_special_tokens: options.addSpecialTokens ?? true }).ids;
  }

  /**
   * Decodes ids to text.
   *
   * @param ids The ids (may be empty).
   * @param skipSpecialTokens Leave special tokens (BOS, EOS, ...) out. Default false.
   * @returns The text.
   */
  decode(ids: readonly number[], skipSpecialTokens = false): string {
    const kept = skipSpecialTokens ? ids.filter((i) => !this.#special.has(i)) : [...ids];
    if (kept.length === 0) return "";
    return this.#tok.decode(kept, { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: false });
  }

  /**
   * Renders chat messages with the model's chat template (as `apply_chat_template(tokenize=False)` does).
   *
   * @param messages The conversation.
   * @param addGenerationPrompt Append the template's assistant header (for generation). Default false.
   * @param where What is rendered (a data file and line), for error messages.
   * @returns The rendered text; encode it with `addSpecialTokens: false`, since templates write BOS themselves.
   * @throws {Error} If the tokenizer has no chat template, or rendering fails (naming `tokenizer_config.json` and
   *   `where`).
   */
  applyChatTemplate(messages: readonly ChatMessage[], addGenerationPrompt = false, where?: string): string {
    if (this.#template === null) throw new Error("The tokenizer has no chat_template in tokenizer_config.json");
    return this.#template.render({
      messages,
      add_generation_prompt: addGenerationPrompt,
      bos_token: this.#tokenStrings.bos ?? "",
      eos_token: this.#tokenStrings.eos ?? "",
      pad_token: this.#tokenStrings.pad ?? "",
    }, where);
  }
}

/** Model types `@huggingface/tokenizers` implements (any other builds a tokenizer that encodes to nulls). */
const _MODEL_TYPES = ["BPE", "WordPiece", "Unigram"];

/** The content of a special token entry: a string, or `{content: ...}` (AddedToken form). */
function _tokenString(value: unknown): string | null {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && typeof (value as { content?: unknown }).content === "string") {
    return (value as { content: string }).content;
  }
  return null;
}

async function _readOptional(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    await storage().stat(path);
  } catch (e) {
    if (storage().isNotFound(e)) return undefined;
    throw e;
  }
  return await readJsonFile(path);
}

/**
 * Loads the tokenizer of a Hugging Face model folder: `tokenizer.json` (required), and `tokenizer_config.json`,
 * `special_tokens_map.json`, `config.json` when present.
 *
 * @param dir The model folder.
 * @returns The tokenizer.
 * @throws {Error} Naming the file when `tokenizer.json` is missing, a file is not a JSON object, or a file's
 *   content is not usable (see {@linkcode TextTokenizer}).
 *
 * @example Load a folder
 * ```ts
 * import { loadTokenizer } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const model = { type: "BPE", vocab: { x: 0, "</s>": 1 }, merges: [] };
 * await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify({ model }));
 * await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ eos_token: "</s>" }));
 * const tok = await loadTokenizer(dir);
 * assert.equal(tok.eosId, 1);
 * assert.equal(tok.bosId, null);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  const [tokenizer, tokenizerConfig, specialTokensMap, config] = await Promise.all([
    readJsonFile(`${dir}/tokenizer.json`),
    _readOptional(`${dir}/tokenizer_config.json`),
    _readOptional(`${dir}/special_tokens_map.json`),
    _readOptional(`${dir}/config.json`),
  ]);
  return new TextTokenizer({ tokenizer, tokenizerConfig, specialTokensMap, config, dir });
}
