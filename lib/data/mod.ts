/**
 * Training data: JSON Lines records, tokenization with label masks, the length-grouped resumable loader, data
 * inspection and exact-match evaluation.
 *
 * @example Records from JSON Lines; a bad line names the file and line
 * ```ts
 * import { parseJsonl } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * assert.equal(parseJsonl('{"prompt": "1+1=", "completion": "2"}\n{"text": "hi"}\n', "d.jsonl").length, 2);
 * assert.throws(() => parseJsonl('{"text": 1}', "d.jsonl"), /d\.jsonl:1: "text" must be a string/);
 * ```
 *
 * @module
 */

export * from "./assistant_spans.ts";
export * from "./eval.ts";
export * from "./examples.ts";
export * from "./inspect.ts";
export * from "./loader.ts";
export * from "./records.ts";
