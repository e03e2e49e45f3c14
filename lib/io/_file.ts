// Private file helpers: whole writes and exact positioned reads on a Deno.FsFile, copying a folder's other files.

import { join, resolve } from "node:path";

/** Writes every byte (a single `write` may write fewer). */
export async function _writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) done += await file.write(bytes.subarray(done));
}

/**
 * Reads exactly `length` bytes at `offset`; `what` names the file and item in the error when the file ends early
 * (it shrank after its header was checked).
 */
export async function _readAt(file: Deno.FsFile, offset: number, length: number, what: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  await file.seek(offset, Deno.SeekMode.Start);
  let done = 0;
  while (done < length) {
    const n = await file.read(out.subarray(done));
    if (n === null) throw new Error(`${what}: file ends after ${offset + done} bytes, expected ${offset + length}`);
    done += n;
  }
  return out;
}

/** Whether a path exists (file or folder). */
export async function _exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
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
  for await (const e of Deno.readDir(join(from, rel))) {
    const src = join(from, rel, e.name);
    if (skip.has(resolve(src)) || resolve(src) === resolve(to)) continue;
    if (e.isDirectory) {
      await Deno.mkdir(join(to, rel, e.name), { recursive: true });
      copied.push(...await _copyOtherFiles(from, to, skip, join(rel, e.name)));
    } else if (e.isFile) {
      await Deno.copyFile(src, join(to, rel, e.name));
      copied.push(join(rel, e.name));
    }
  }
  return copied.sort();
}
