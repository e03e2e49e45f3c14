/**
 * Atomic file writes: write to a temporary name beside the target, flush to disk, then rename over it, so a
 * crash or a kill mid-write leaves either the old file or the new one, never a torn one; and the sweep of the
 * temporary files a killed writer leaves behind.
 *
 * @module
 */

import { join } from "../platform/path.ts";
import { storage, type WritableFile } from "../platform/storage.ts";
import { _namingPath, _TEMP_NAME, _tempName, _unlessNotFound, _writeAll } from "./_file.ts";

/**
 * Writes a file through an open handle and atomically moves it into place when `write` resolves. If anything
 * fails, the temporary file is removed, the target is left untouched, and the error names `path`.
 *
 * @param path Destination path.
 * @param write Receives the open temporary file; returns any value.
 * @returns What `write` returned.
 *
 * @example Stream into a file
 * ```ts
 * import { withAtomicFile } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile();
 * await withAtomicFile(path, async (file) => {
 *   await file.write(new TextEncoder().encode("hello"));
 * });
 * assert.equal(await Deno.readTextFile(path), "hello");
 * ```
 */
export async function withAtomicFile<T>(path: string, write: (file: WritableFile) => Promise<T>): Promise<T> {
  const fs = storage();
  const tmp = _tempName(path);
  const file = await fs.openWrite(tmp);
  let closed = false;
  try {
    const result = await write(file);
    await file.sync();
    closed = true;
    file.close();
    await fs.rename(tmp, path);
    return result;
  } catch (e) {
    if (!closed) file.close();
    await fs.remove(tmp).catch(() => {});
    throw _namingPath(e, path);
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
 * import { writeFileAtomic } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile();
 * await writeFileAtomic(path, "{}");
 * assert.equal(await Deno.readTextFile(path), "{}");
 * ```
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  await withAtomicFile(path, async (file) => {
    await _writeAll(file, bytes, path);
  });
}

/**
 * Removes the temporary files (and folders) that writers killed mid-write left in a folder: entries named
 * `NAME.tmp-PID-XXXXXXXX` whose process is gone. Those of this process and of live processes are kept (they may
 * be writing now); without `--allow-run` liveness cannot be asked, and every other process's are removed. Call it
 * on an output folder when a run starts or resumes; the folder's other files are not touched.
 *
 * @param dir The folder (not its sub-folders); a missing one has nothing to sweep.
 * @returns The names removed, sorted.
 *
 * @example A killed writer's leftover goes, the finished file stays
 * ```ts
 * import { sweepTempFiles, writeFileAtomic } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeFileAtomic(`${dir}/loss.svg`, "<svg/>");
 * await Deno.writeTextFile(`${dir}/loss.svg.tmp-999999999-0badf00d`, "<sv");
 * assert.deepEqual(await sweepTempFiles(dir), ["loss.svg.tmp-999999999-0badf00d"]);
 * assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["loss.svg"]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function sweepTempFiles(dir: string): Promise<string[]> {
  const removed: string[] = [];
  const fs = storage();
  try {
    for await (const e of fs.readDir(dir)) {
      const m = _TEMP_NAME.exec(e.name);
      if (!m || fs.alive(Number(m[1]))) continue;
      await fs.remove(join(dir, e.name), { recursive: true }).catch(_unlessNotFound);
      removed.push(e.name);
    }
  } catch (e) {
    _unlessNotFound(e);
  }
  return removed.sort();
}
