/**
 * {@linkcode Storage} on Deno's file system: the default under Deno. Every call goes to `Deno.*` when made (not
 * bound at load), so a test that wraps `Deno.open` or `Deno.rename` sees the library's calls.
 *
 * @module
 */

import type { DirEntry, FileInfo, ReadableFile, Storage, WritableFile } from "./storage.ts";

/**
 * Deno's file system as a {@linkcode Storage}, or undefined outside Deno.
 *
 * @returns The storage.
 *
 * @example
 * ```ts
 * import { denoStorage } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * const fs = denoStorage()!;
 * const dir = await Deno.makeTempDir();
 * await fs.writeFile(`${dir}/a.txt`, "hi");
 * assert.equal((await fs.stat(`${dir}/a.txt`)).size, 2);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function denoStorage(): Storage | undefined {
  if (typeof Deno === "undefined") return undefined;
  return {
    readFile: (path) => Deno.readFile(path),
    readTextFile: (path) => Deno.readTextFile(path),
    writeFile: (path, data, options) =>
      typeof data === "string"
        ? Deno.writeTextFile(path, data, { append: options?.append })
        : Deno.writeFile(path, data, { append: options?.append }),
    truncate: (path, length) => Deno.truncate(path, length),
    openRead: async (path) => _readable(await Deno.open(path, { read: true })),
    openWrite: async (path, options) =>
      _writable(
        await Deno.open(path, options?.append ? { append: true } : { write: true, create: true, truncate: true }),
      ),
    stat: async (path): Promise<FileInfo> => {
      const s = await Deno.stat(path);
      return { isFile: s.isFile, isDirectory: s.isDirectory, size: s.size };
    },
    readDir: (path): AsyncIterable<DirEntry> => Deno.readDir(path),
    mkdir: (path, options) => Deno.mkdir(path, options),
    remove: (path, options) => Deno.remove(path, options),
    rename: (from, to) => Deno.rename(from, to),
    copyFile: (from, to) => Deno.copyFile(from, to),
    isNotFound: (e) => e instanceof Deno.errors.NotFound,
    cwd: () => Deno.cwd(),
    writerId: Deno.pid,
    alive: _alive,
    get stderr() {
      return Deno.stderr;
    },
  };
}

async function _readable(file: Deno.FsFile): Promise<ReadableFile> {
  const size = (await file.stat()).size;
  return {
    size,
    read: async (offset, into) => {
      await file.seek(offset, Deno.SeekMode.Start);
      return await file.read(into);
    },
    close: () => file.close(),
  };
}

function _writable(file: Deno.FsFile): WritableFile {
  return {
    write: (bytes) => file.write(bytes),
    seek: async (offset) => {
      await file.seek(offset, Deno.SeekMode.Start);
    },
    sync: () => file.syncData(),
    close: () => file.close(),
  };
}

/** Whether process `pid` runs (this one always does); false when that cannot be asked (no `--allow-run`). */
function _alive(pid: number): boolean {
  if (pid === Deno.pid) return true;
  try {
    // Deno's global `process` (Deno.kill has no signal 0).
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it runs, as another user.
    return (e as { code?: string }).code === "EPERM";
  }
}
