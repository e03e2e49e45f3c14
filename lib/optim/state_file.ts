/**
 * The optimizer state file: a small JSON header (what the state belongs to) and the raw state bytes,
 * checked by length and CRC-32, so a run can resume and a corrupt or mismatched file is refused.
 *
 * Layout: the 8 bytes `QLWOPT1\n`, a little-endian u32 header length, the UTF-8 JSON header, the payload.
 *
 * @module
 */

import { crc32 } from "../platform/crc32.ts";
import { _writeAll } from "../io/_file.ts";
import { withAtomicFile } from "../io/atomic_write.ts";
import { storage } from "../platform/storage.ts";

const MAGIC = new TextEncoder().encode("QLWOPT1\n");

/** What an optimizer state file says about its contents. */
export interface StateFileHeader {
  /** The optimizer (e.g. `"adamw-f32"`, `"adamw-8bit"`). */
  kind: string;
  /** Optimizer steps taken. */
  step: number;
  /** Page size of the state layout, bytes. */
  pageSize: number;
  /** Parameters, in order: name and element count. */
  params: { name: string; numel: number }[];
  /**
   * Parameters per run (consecutive parameters whose state is laid out as one), in order; absent in files written
   * before runs: one parameter each.
   */
  runs?: number[];
  /** Payload bytes. */
  payloadBytes: number;
  /** CRC-32 of the payload. */
  crc32: number;
}

/**
 * Writes a state file atomically: to a temporary name beside `path`, flushed, then renamed over it (on failure
 * the temporary file is removed and the error names `path`).
 *
 * @param path Destination.
 * @param header Everything but `payloadBytes` and `crc32`, which are computed.
 * @param payload The state bytes.
 *
 * @example Round trip
 * ```ts
 * import { readStateFile, writeStateFile } from "@qlora/webgpu/optim";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile();
 * await writeStateFile(path, { kind: "demo", step: 3, pageSize: 256, params: [] }, new Uint8Array([1, 2]));
 * const { header, payload } = await readStateFile(path);
 * assert.equal(header.step, 3);
 * assert.deepEqual([...payload], [1, 2]);
 * await Deno.remove(path);
 * ```
 */
export async function writeStateFile(
  path: string,
  header: Omit<StateFileHeader, "payloadBytes" | "crc32">,
  payload: Uint8Array,
): Promise<void> {
  const full: StateFileHeader = { ...header, payloadBytes: payload.byteLength, crc32: crc32(payload) };
  const json = new TextEncoder().encode(JSON.stringify(full));
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, json.byteLength, true);
  await withAtomicFile(path, async (file) => {
    for (const part of [MAGIC, len, json, payload]) await _writeAll(file, part, path);
  });
}

/**
 * Reads and checks a state file written by {@linkcode writeStateFile}.
 *
 * @param path The file.
 * @returns The header and the payload.
 * @throws {Error} Naming the file, if it is not a state file, is truncated, or fails its checksum.
 */
export async function readStateFile(path: string): Promise<{ header: StateFileHeader; payload: Uint8Array }> {
  const bytes = await storage().readFile(path);
  const bad = (why: string) => new Error(`Optimizer state file ${path}: ${why}`);
  if (bytes.byteLength < 12 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw bad("not an optimizer state file (bad magic)");
  }
  const len = new DataView(bytes.buffer, bytes.byteOffset).getUint32(8, true);
  if (12 + len > bytes.byteLength) throw bad(`truncated header (${len} bytes announced)`);
  let header: StateFileHeader;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(12, 12 + len)));
  } catch (e) {
    throw bad(`corrupt header (${(e as Error).message})`);
  }
  const payload = bytes.subarray(12 + len);
  if (payload.byteLength !== header.payloadBytes) {
    throw bad(`payload is ${payload.byteLength} bytes, the header says ${header.payloadBytes} (truncated?)`);
  }
  if (crc32(payload) !== header.crc32) throw bad("checksum mismatch: the state bytes are corrupt");
  return { header, payload };
}
