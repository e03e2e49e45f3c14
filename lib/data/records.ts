/**
 * Training data as JSON Lines: each line is `{"text": …}`, `{"prompt": …, "completion": …}` or
 * `{"messages": [{"role": …, "content": …}, …]}`. Other keys on a line are ignored (datasets often carry ids).
 *
 * @module
 */

import type { ChatMessage } from "../io/tokenizer.ts";
import { storage } from "../platform/storage.ts";

/** One parsed data line; `line` is its 1-based line number in `file` (set by {@linkcode parseJsonl}). */
export type DataRecord =
  & { line: number; file?: string }
  & (
    | { kind: "text"; text: string }
    | { kind: "prompt"; prompt: string; completion: string }
    | { kind: "messages"; messages: ChatMessage[] }
  );

/** Longest data line accepted, in characters: beyond any example a model trains on, and well within memory. */
export const MAX_LINE_CHARS: number = 64 * 2 ** 20;

/**
 * Parses JSON Lines text into records; blank lines are skipped, and so is a UTF-8 byte order mark at the start.
 *
 * @param text The file contents.
 * @param source The file name, for errors.
 * @returns The records, in file order.
 * @throws {Error} `FILE:LINE: what is wrong` for the first bad line (one over {@linkcode MAX_LINE_CHARS} included), or
 *   when there is no record at all.
 *
 * @example
 * ```ts
 * import { parseJsonl } from "@qlora/webgpu/data";
 * import assert from "node:assert/strict";
 * const records = parseJsonl('{"prompt": "1+1=", "completion": "2"}\n\n{"text": "hi"}\n', "d.jsonl");
 * assert.deepEqual(records.map((r) => [r.kind, r.line]), [["prompt", 1], ["text", 3]]);
 * assert.throws(() => parseJsonl('{"text": 1}', "d.jsonl"), /d\.jsonl:1: "text" must be a string/);
 * assert.equal(parseJsonl('\uFEFF{"text": "with a BOM"}\n', "d.jsonl")[0].kind, "text");
 * ```
 */
export function parseJsonl(text: string, source: string): DataRecord[] {
  const records: DataRecord[] = [];
  const lines = text.replace(/^\uFEFF/, "").split("\n");
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].replace(/\r$/, "");
    const line = i + 1;
    if (raw.length > MAX_LINE_CHARS) {
      throw new Error(
        `${source}:${line}: the line is ${raw.length} characters long, over the limit of ${MAX_LINE_CHARS} ` +
          `(64 Mi) for one data line`,
      );
    }
    if (raw.trim() === "") continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (e) {
      throw new Error(`${source}:${line}: invalid JSON: ${(e as Error).message}`);
    }
    records.push({ ..._record(value, line, `${source}:${line}`), file: source });
  }
  if (records.length === 0) throw new Error(`${source}: no data lines`);
  return records;
}

/**
 * Reads a JSON Lines data file (see {@linkcode parseJsonl}).
 *
 * @param path The `.jsonl` file.
 * @returns The records, in file order.
 * @throws {Error} Naming the file (and the line) when it cannot be read or a line is bad.
 *
 * @example
 * ```ts
 * import { readJsonl } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile({ suffix: ".jsonl" });
 * await Deno.writeTextFile(path, '{"text": "hello"}\n');
 * assert.equal((await readJsonl(path))[0].kind, "text");
 * ```
 */
export async function readJsonl(path: string): Promise<DataRecord[]> {
  let text: string;
  try {
    text = await storage().readTextFile(path);
  } catch (e) {
    throw new Error(`Cannot read data file ${path}: ${(e as Error).message}`);
  }
  return parseJsonl(text, path);
}

function _record(value: unknown, line: number, where: string): DataRecord {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`${where}: expected a JSON object with "text", "prompt"/"completion" or "messages"`);
  }
  const v = value as Record<string, unknown>;
  const kinds = ["text", "prompt", "messages"].filter((k) => k in v);
  if ("completion" in v && !kinds.includes("prompt")) kinds.push("prompt");
  if (kinds.length !== 1) {
    throw new Error(
      kinds.length === 0
        ? `${where}: expected a "text", "prompt"/"completion" or "messages" key; found ${_keys(v)}`
        : `${where}: ambiguous line with keys ${_keys(v)}: use only one of "text", "prompt"/"completion", "messages"`,
    );
  }
  const str = (key: string): string => {
    if (!(key in v)) throw new Error(`${where}: "${key}" is missing`);
    if (typeof v[key] !== "string") throw new Error(`${where}: "${key}" must be a string, got ${_type(v[key])}`);
    return v[key] as string;
  };
  if (kinds[0] === "text") return { kind: "text", line, text: str("text") };
  if (kinds[0] === "prompt") return { kind: "prompt", line, prompt: str("prompt"), completion: str("completion") };
  const m = v.messages;
  if (!Array.isArray(m) || m.length === 0) {
    throw new Error(`${where}: "messages" must be a non-empty array, got ${_type(m)}`);
  }
  const messages = m.map((msg, j): ChatMessage => {
    const at = `${where}: messages[${j}]`;
    if (msg === null || typeof msg !== "object" || Array.isArray(msg)) throw new Error(`${at} must be an object`);
    const { role, content } = msg as Record<string, unknown>;
    if (typeof role !== "string") throw new Error(`${at}.role must be a string, got ${_type(role)}`);
    if (typeof content !== "string") throw new Error(`${at}.content must be a string, got ${_type(content)}`);
    return { role, content };
  });
  if (!messages.some((msg) => msg.role === "assistant")) {
    throw new Error(`${where}: "messages" has no assistant turn, so nothing would be trained on`);
  }
  return { kind: "messages", line, messages };
}

function _keys(v: Record<string, unknown>): string {
  const keys = Object.keys(v);
  return keys.length === 0 ? "none" : keys.map((k) => JSON.stringify(k)).join(", ");
}

function _type(x: unknown): string {
  return x === null ? "null" : Array.isArray(x) ? "an array" : typeof x;
}
