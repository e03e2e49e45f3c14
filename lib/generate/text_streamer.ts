/**
 * Incremental decoding of generated tokens to text, for streaming: a byte-level tokenizer may split one
 * character over several tokens, so text is released only once it no longer ends in an incomplete character.
 *
 * @module
 */

/** What {@linkcode TextStreamer} needs of a tokenizer. */
export interface StreamDecoder {
  /** Decodes ids to text (special tokens left out). */
  decode(ids: readonly number[], skipSpecialTokens?: boolean): string;
}

/**
 * Turns a stream of token ids into a stream of text pieces, as transformers' `TextStreamer`: it decodes every id
 * so far and releases the new part of the text, holding it back while it ends in U+FFFD (the replacement
 * character of an incomplete UTF-8 sequence).
 *
 * @example A two-byte character split over two tokens
 * ```ts
 * import { TextStreamer } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const bytes = (ids: readonly number[]) => new TextDecoder().decode(Uint8Array.from(ids));
 * const s = new TextStreamer({ decode: bytes });
 * assert.equal(s.push(0x61), "a");
 * assert.equal(s.push(0xc3), "");
 * assert.equal(s.push(0xa9), "é");
 * assert.equal(s.text, "aé");
 * ```
 */
export class TextStreamer {
  #decoder: StreamDecoder;
  #ids: number[] = [];
  #released = 0;
  #text = "";

  /**
   * Creates a streamer.
   *
   * @param decoder The tokenizer (special tokens are left out of the text).
   */
  constructor(decoder: StreamDecoder) {
    this.#decoder = decoder;
  }

  /** The whole decoded text so far (an incomplete last character included). */
  get text(): string {
    return this.#text;
  }

  /**
   * Adds a token.
   *
   * @param id The token id.
   * @returns The text to print now (may be empty).
   */
  push(id: number): string {
    this.#ids.push(id);
    this.#text = this.#decoder.decode(this.#ids, true);
    if (this.#text.endsWith("\uFFFD")) return "";
    const piece = this.#text.slice(this.#released);
    this.#released = this.#text.length;
    return piece;
  }

  /**
   * Releases what is held back (an incomplete character at the end, as U+FFFD).
   *
   * @returns The rest of the text.
   */
  flush(): string {
    const piece = this.#text.slice(this.#released);
    this.#released = this.#text.length;
    return piece;
  }
}
