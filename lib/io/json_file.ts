/**
 * JSON files (config.json, tokenizer_config.json, index files): reading with errors that name the file, and
 * atomic writing in the 2-space style transformers uses.
 *
 * @module
 */

import { writeFileAtomic } from "./atomic_write.ts";
import { storage } from "../platform/storage.ts";

/**
 * Reads a file holding a JSON object.
 *
 * @param path The file.
 * @returns The parsed object.
 * @throws {Error} Naming the file when it is missing, not JSON, or not an object.
 *
 * @example
 * ```ts
 * import { readJsonFile } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, '{"hidden_size": 64}');
 * assert.equal((await readJsonFile(path)).hidden_size, 64);
 * await Deno.writeTextFile(path, "[1]");
 * await assert.rejects(readJsonFile(path), /not a JSON object/);
 * ```
 */
export async function readJsonFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await storage().readTextFile(path);
  } catch (e) {
    throw new Error(`${path}: cannot read: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${path}: not a JSON object`);
  }
  return value as Record<string, unknown>;
}

/**
 * Writes a value as pretty JSON (2-space indent, trailing newline), atomically.
 *
 * @param path Destination.
 * @param value Any JSON-serializable value.
 * @param floatKeys Keys whose whole-number values are written with `.0`, for readers that check for a Python
 * float (transformers' `BitsAndBytesConfig` rejects `"llm_int8_threshold": 6`).
 *
 * @example
 * ```ts
 * import { readJsonFile, writeJsonFile } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile();
 * await writeJsonFile(path, { a: 1, t: 6 }, ["t"]);
 * assert.deepEqual(await readJsonFile(path), { a: 1, t: 6 });
 * assert.match(await Deno.readTextFile(path), /"t": 6\.0\n/);
 * ```
 */
export async function writeJsonFile(path: string, value: unknown, floatKeys: readonly string[] = []): Promise<void> {
  let text = JSON.stringify(value, null, 2);
  for (const key of floatKeys) {
    text = text.replace(new RegExp(`^(\\s*${JSON.stringify(key)}: -?\\d+)(,?)$`, "gm"), "$1.0$2");
  }
  await writeFileAtomic(path, text + "\n");
}
