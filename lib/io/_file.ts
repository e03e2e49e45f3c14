// Private file helpers: whole writes and exact positioned reads on an open file, temporary names, new output
// folders filled under a `.partial` name, copying a folder's other files.

import { join, resolve } from "../platform/path.ts";
import { type ReadableFile, storage, type WritableFile } from "../platform/storage.ts";

/** Temporary names made by {@linkcode _tempName}: the target's name, `.tmp-`, the writer's id (pid), 8 hex digits. */
export const _TEMP_NAME: RegExp = /\.tmp-(\d+)-[0-9a-f]{8}$/;

/** A fresh temporary name beside `path` (see {@linkcode _TEMP_NAME}). */
export function _tempName(path: string): string {
  return `${path}.tmp-${storage().writerId}-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * The error `e` with `path` in front of its message, unless it names it already: errors of an open handle
 * (a full disk's "No space left on device (os error 28)") name no file. Class, `code` and cause are kept.
 */
export function _namingPath(e: unknown, path: string): unknown {
  if (!(e instanceof Error) || e.message.includes(path)) return e;
  const named = new (e.constructor as ErrorConstructor)(`${path}: ${e.message}`, { cause: e });
  if ("code" in e) Object.assign(named, { code: e.code });
  return named;
}

/** Writes every byte (a single `write` may write fewer); an error names `path`, the file being written. */
export async function _writeAll(file: WritableFile, bytes: Uint8Array, path: string): Promise<void> {
  try {
    let done = 0;
    while (done < bytes.byteLength) done += await file.write(bytes.subarray(done));
  } catch (e) {
    throw _namingPath(e, path);
  }
}

/**
 * Reads exactly `length` bytes at `offset`; `what` names the file and item in the error when the file ends early
 * (it shrank after its header was checked).
 */
export async function _readAt(file: ReadableFile, offset: number, length: number, what: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = await file.read(offset + done, out.subarray(done));
    if (n === null) throw new Error(`${what}: file ends after ${offset + done} bytes, expected ${offset + length}`);
    done += n;
  }
  return out;
}

/** Whether a path exists (file or folder). */
export async function _exists(path: string): Promise<boolean> {
  try {
    await storage().stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Fills a new output folder under the name `OUT.partial` and renames it to `OUT` once `fill` resolves, so a run
 * killed midway leaves no `OUT` that looks complete. A `.partial` folder left by a killed run is removed first;
 * on failure the partial folder is removed.
 *
 * @returns What `fill` returned.
 * @throws {Error} If `OUT` exists and is not an empty folder (nothing of the user's is replaced).
 */
export async function _fillNewFolder<T>(out: string, fill: (dir: string) => Promise<T>): Promise<T> {
  await _checkNewFolder(out);
  const final = out.replace(/[\\/]+$/, "");
  const partial = `${final}.partial`;
  const fs = storage();
  await fs.remove(partial, { recursive: true }).catch(_unlessNotFound);
  await fs.mkdir(partial, { recursive: true });
  try {
    const result = await fill(partial);
    await _checkNewFolder(final);
    await fs.remove(final).catch(_unlessNotFound);
    await fs.rename(partial, final);
    return result;
  } catch (e) {
    await fs.remove(partial, { recursive: true }).catch(() => {});
    throw e;
  }
}

/**
 * For an error about a missing folder `out`: a note when `out.partial` exists instead (a quantize or merge into
 * `out` did not finish), else "".
 */
export async function _partialNote(out: string): Promise<string> {
  const final = out.replace(/[\\/]+$/, "");
  if (await _exists(final) || !(await _exists(`${final}.partial`))) return "";
  return ` (${final}.partial exists: the quantize or merge that writes ${final} did not finish; run it again)`;
}

/** Throws unless `out` is missing or an empty folder (checked early by callers with a long run ahead). */
export async function _checkNewFolder(out: string): Promise<void> {
  try {
    for await (const _ of storage().readDir(out)) {
      throw new Error(`Output folder ${out} already exists and is not empty: choose a new folder or remove it`);
    }
  } catch (e) {
    _unlessNotFound(e);
  }
}

/** Rethrows anything but "not found" (for removing what may not be there). */
export function _unlessNotFound(e: unknown): void {
  if (!storage().isNotFound(e)) throw e;
}

/**
 * Copies every file of `from` (sub-folders included) into `to`, except the paths in `skip` (resolved) and `to`
 * itself; returns the relative paths copied, sorted.
 */
export async function _copyOtherFiles(
  from: string,
  to: string,
  skip: ReadonlySet<string>,
  rel = "",
): Promise<string[]> {
  const copied: string[] = [];
  const fs = storage();
  for await (const e of fs.readDir(join(from, rel))) {
    const src = join(from, rel, e.name);
    if (skip.has(resolve(src)) || resolve(src) === resolve(to)) continue;
    if (e.isDirectory) {
      await fs.mkdir(join(to, rel, e.name), { recursive: true });
      copied.push(...await _copyOtherFiles(from, to, skip, join(rel, e.name)));
    } else if (e.isFile) {
      await fs.copyFile(src, join(to, rel, e.name));
      copied.push(join(rel, e.name));
    }
  }
  return copied.sort();
}
