/**
 * Atomic file writes: write to a temporary name beside the target, flush to disk, then rename over it, so a
 * crash or a kill mid-write leaves either the old file or the new one, never a torn one.
 *
 * @module
 */

import { _writeAll } from "./_file.ts";

/**
 * Writes a file through an open handle and atomically moves it into place when `write` resolves. If `write`
 * throws, the temporary file is removed and the target is left untouched.
 *
 * @param path Destination path.
 * @param write Receives the open temporary file; returns any value.
 * @returns What `write` returned.
 *
 * @example Stream into a file
 * ```ts
 * import { withAtomicFile } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile();
 * await withAtomicFile(path, async (file) => {
 *   await file.write(new TextEncoder().encode("hello"));
 * });
 * assert.equal(await Deno.readTextFile(path), "hello");
 * ```
 */
export async function withAtomicFile<T>(path: string, write: (file: Deno.FsFile) => Promise<T>): Promise<T> {
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  let closed = false;
  try {
    const result = await write(file);
    await file.syncData();
    file.close();
    closed = true;
    await Deno.rename(tmp, path);
    return result;
  } catch (e) {
    if (!closed) file.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Writes bytes or text to a file atomically (temporary name, flush, rename).
 *
 * @param path Destination path.
 * @param data Bytes, or text written as UTF-8.
 *
 * @example
 * ```ts
 * import { writeFileAtomic } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile();
 * await writeFileAtomic(path, "{}");
 * assert.equal(await Deno.readTextFile(path), "{}");
 * ```
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  await withAtomicFile(path, async (file) => {
    await _writeAll(file, bytes);
  });
}
