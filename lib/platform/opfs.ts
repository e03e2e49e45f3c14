/**
 * {@linkcode Storage} on the browser's origin private file system (OPFS): what a page keeps across reloads
 * (checkpoints to resume from, the adapter). A file's writes land when it is synced or closed (OPFS writes through
 * a swap file), so an atomic write is still temp + sync + rename.
 *
 * @module
 */

import { NotFoundError } from "./memory.ts";
import { basename, dirname, normalize } from "./path.ts";
import {
  consoleSink,
  type DirEntry,
  type FileInfo,
  type ReadableFile,
  type Storage,
  type WritableFile,
} from "./storage.ts";

/** The part of `FileSystemDirectoryHandle` used here (Deno's types lack OPFS). */
export interface OpfsDirectory {
  /** `"directory"`. */
  readonly kind: "directory";
  /** A sub-folder. */
  getDirectoryHandle(name: string, options?: { create?: boolean }): Promise<OpfsDirectory>;
  /** A file. */
  getFileHandle(name: string, options?: { create?: boolean }): Promise<OpfsFile>;
  /** Removes an entry. */
  removeEntry(name: string, options?: { recursive?: boolean }): Promise<void>;
  /** The entries. */
  entries(): AsyncIterable<[string, OpfsDirectory | OpfsFile]>;
}

/** The part of `FileSystemFileHandle` used here. */
export interface OpfsFile {
  /** `"file"`. */
  readonly kind: "file";
  /** A snapshot of the contents. */
  getFile(): Promise<Blob>;
  /** A stream writing through a swap file, in place on close. */
  createWritable(options?: { keepExistingData?: boolean }): Promise<OpfsWritable>;
  /** Moves the file (Chrome). */
  move?(parent: OpfsDirectory, name: string): Promise<void>;
}

/** The part of `FileSystemWritableFileStream` used here. */
export interface OpfsWritable {
  /** Writes at a position. */
  write(
    chunk: { type: "write"; position: number; data: Uint8Array } | { type: "truncate"; size: number },
  ): Promise<void>;
  /** Commits the swap file. */
  close(): Promise<void>;
}

/**
 * The origin private file system as a {@linkcode Storage}; paths are `/`-separated from its root.
 *
 * @param root The folder to use as `/` (default `navigator.storage.getDirectory()`).
 * @returns The storage.
 * @throws {Error} Where the browser has no OPFS.
 *
 * @example Refused where there is no OPFS
 * ```ts
 * import { opfsStorage } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * if (!("storage" in navigator)) await assert.rejects(opfsStorage(), /no origin private file system/);
 * ```
 */
export async function opfsStorage(root?: OpfsDirectory): Promise<Storage> {
  const nav = navigator as unknown as { storage?: { getDirectory?: () => Promise<OpfsDirectory> } };
  if (!root && !nav.storage?.getDirectory) throw new Error("This browser has no origin private file system (OPFS)");
  const top = root ?? await nav.storage!.getDirectory!();
  const writerId = 1 + Math.floor(Math.random() * 0x7fffffff);
  const parts = (p: string) => normalize(p.startsWith("/") ? p : `/${p}`).split("/").filter((s) => s !== "");
  const notFound = (e: unknown, p: string, op: string) =>
    ["NotFoundError", "TypeMismatchError"].includes((e as DOMException)?.name) ? new NotFoundError(p, op) : e;
  const dir = async (p: string, op: string, create = false) => {
    let d = top;
    try {
      for (const s of parts(p)) d = await d.getDirectoryHandle(s, { create });
    } catch (e) {
      throw notFound(e, p, op);
    }
    return d;
  };
  const file = async (p: string, op: string, create = false) => {
    const d = await dir(dirname(p), op);
    try {
      return await d.getFileHandle(basename(p), { create });
    } catch (e) {
      throw notFound(e, p, op);
    }
  };
  const blob = async (p: string, op: string) => await (await file(p, op)).getFile();
  const fs: Storage = {
    readFile: async (p) => new Uint8Array(await (await blob(p, "readfile")).arrayBuffer()),
    readTextFile: async (p) => await (await blob(p, "readfile")).text(),
    writeFile: async (p, data, options) => {
      const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
      const h = await file(p, "write", !options?.append);
      const at = options?.append ? (await h.getFile()).size : 0;
      const w = await h.createWritable({ keepExistingData: options?.append });
      await w.write({ type: "write", position: at, data: bytes });
      await w.close();
    },
    truncate: async (p, length) => {
      const w = await (await file(p, "truncate")).createWritable({ keepExistingData: true });
      await w.write({ type: "truncate", size: length });
      await w.close();
    },
    openRead: async (p): Promise<ReadableFile> => {
      const b = await blob(p, "open");
      return {
        size: b.size,
        read: async (offset, into) => {
          if (offset >= b.size) return into.byteLength === 0 ? 0 : null;
          const got = new Uint8Array(await b.slice(offset, offset + into.byteLength).arrayBuffer());
          into.set(got);
          return got.byteLength;
        },
        close: () => {},
      };
    },
    openWrite: async (p, options): Promise<WritableFile> => {
      const h = await file(p, "open", !options?.append);
      let at = options?.append ? (await h.getFile()).size : 0;
      let w = await h.createWritable({ keepExistingData: options?.append });
      let open = true;
      return {
        write: async (bytes) => {
          await w.write({ type: "write", position: at, data: bytes });
          at += bytes.byteLength;
          return bytes.byteLength;
        },
        seek: (offset) => Promise.resolve(void (at = offset)),
        sync: async () => {
          // OPFS commits a writable stream only by closing it; a new one takes the writes after it.
          if (!open) return;
          await w.close();
          w = await h.createWritable({ keepExistingData: true });
        },
        close: () => {
          if (open) w.close().catch(() => {});
          open = false;
        },
      };
    },
    stat: async (p): Promise<FileInfo> => {
      if (parts(p).length === 0) return { isFile: false, isDirectory: true, size: 0 };
      const d = await dir(dirname(p), "stat");
      for await (const [name, h] of d.entries()) {
        if (name !== basename(p)) continue;
        const size = h.kind === "file" ? (await h.getFile()).size : 0;
        return { isFile: h.kind === "file", isDirectory: h.kind === "directory", size };
      }
      throw new NotFoundError(p, "stat");
    },
    readDir: async function* (p): AsyncIterable<DirEntry> {
      for await (const [name, h] of (await dir(p, "readdir")).entries()) {
        yield { name, isFile: h.kind === "file", isDirectory: h.kind === "directory" };
      }
    },
    mkdir: async (p, options) => {
      if (!options?.recursive) {
        const exists = await fs.stat(p).then(() => true, () => false);
        if (exists) throw new Error(`File exists: mkdir '${p}'`);
        await dir(dirname(p), "mkdir");
      }
      await dir(p, "mkdir", true);
    },
    remove: async (p, options) => {
      const d = await dir(dirname(p), "remove");
      try {
        await d.removeEntry(basename(p), { recursive: options?.recursive });
      } catch (e) {
        throw notFound(e, p, "remove");
      }
    },
    rename: async (from, to) => {
      const info = await fs.stat(from);
      if (info.isFile) {
        const h = await file(from, "rename");
        const target = await dir(dirname(to), "rename");
        if (h.move) return await h.move(target, basename(to));
        await fs.copyFile(from, to);
        return await fs.remove(from);
      }
      // Folders are copied and the source removed: OPFS has no folder move everywhere.
      await fs.remove(to, { recursive: true }).catch((e) => {
        if (!fs.isNotFound(e)) throw e;
      });
      await _copyTree(fs, from, to);
      await fs.remove(from, { recursive: true });
    },
    copyFile: async (from, to) => await fs.writeFile(to, await fs.readFile(from)),
    isNotFound: (e) => e instanceof NotFoundError,
    cwd: () => "/",
    writerId,
    alive: (id) => id === writerId,
    stderr: consoleSink,
  };
  return fs;
}

async function _copyTree(fs: Storage, from: string, to: string): Promise<void> {
  await fs.mkdir(to, { recursive: true });
  for await (const e of fs.readDir(from)) {
    if (e.isDirectory) await _copyTree(fs, `${from}/${e.name}`, `${to}/${e.name}`);
    else await fs.copyFile(`${from}/${e.name}`, `${to}/${e.name}`);
  }
}
