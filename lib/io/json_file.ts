/**
 * JSON files (config.json, tokenizer_config.json, index files): reading with errors that name the file, and
 * atomic writing in the 2-space style transformers uses.
 *
 * @module
 */

import { writeFileAtomic } from "./atomic_write.ts";

/**
 * Reads a file holding a JSON object.
 *
 * @param path The file.
 * @returns The parsed object.
 * @throws {Error} Naming the file when it is missing, not JSON, or not an object.
 *
 * @example
 * ```ts
 * import { readJsonFile } from "@qlora/webgpu";
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
    text = await Deno.readTextFile(path);
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
 *
 * @example
 * ```ts
 * import { readJsonFile, writeJsonFile } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile();
 * await writeJsonFile(path, { a: 1 });
 * assert.deepEqual(await readJsonFile(path), { a: 1 });
 * ```
 */
export async function writeJsonFile(path: string, value: unknown): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value, null, 2) + "\n");
}
