/**
 * {@linkcode Storage} in memory: for tests, and for files a page makes (the tiny demo model) before they go to OPFS.
 *
 * @module
 */

import { dirname, normalize } from "./path.ts";
import {
  consoleSink,
  type DirEntry,
  type FileInfo,
  type ReadableFile,
  type Storage,
  type WritableFile,
} from "./storage.ts";

/** The error of a {@linkcode memoryStorage} or `opfsStorage` path that does not exist. */
export class NotFoundError extends Error {
  /** The missing path. */
  readonly path: string;
  /**
   * The error for `path`.
   *
   * @param path The missing path.
   * @param op What was tried (`open`, `stat`, `readdir`, ...).
   */
  constructor(path: string, op: string) {
    super(`No such file or directory: ${op} '${path}'`);
    this.name = "NotFound";
    this.path = path;
  }
}

/**
 * A fresh, empty file system in memory, working folder `/`; progress lines go to `console.log`.
 *
 * @returns The storage.
 *
 * @example
 * ```ts
 * import { memoryStorage } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * const fs = memoryStorage();
 * await fs.mkdir("/out/run", { recursive: true });
 * await fs.writeFile("/out/run/a.txt", "hello");
 * await fs.rename("/out/run", "/out/done");
 * assert.equal(await fs.readTextFile("/out/done/a.txt"), "hello");
 * await assert.rejects(fs.stat("/out/run"), (e) => fs.isNotFound(e));
 * ```
 */
export function memoryStorage(): Storage {
  const files = new Map<string, Uint8Array>();
  const dirs = new Set<string>(["/"]);
  const abs = (p: string) => normalize(p.startsWith("/") ? p : `/${p}`);
  const file = (p: string, op: string) => {
    const f = files.get(abs(p));
    if (!f) throw new NotFoundError(p, op);
    return f;
  };
  const parent = (p: string, op: string) => {
    if (!dirs.has(dirname(abs(p)))) throw new NotFoundError(p, op);
  };
  const under = (p: string) => [...files.keys(), ...dirs].filter((k) => k.startsWith(`${abs(p)}/`));
  const put = (p: string, bytes: Uint8Array) => {
    parent(p, "write");
    if (dirs.has(abs(p))) throw new Error(`Is a directory: write '${p}'`);
    files.set(abs(p), bytes);
  };
  const encode = (d: Uint8Array | string) => typeof d === "string" ? new TextEncoder().encode(d) : d.slice();
  const fs: Storage = {
    readFile: async (p) => (await Promise.resolve(), file(p, "readfile").slice()),
    readTextFile: async (p) => new TextDecoder().decode(await fs.readFile(p)),
    writeFile: async (p, data, options) => {
      const bytes = encode(data);
      const old = options?.append ? files.get(abs(p)) : undefined;
      put(p, old ? _concat(old, bytes) : bytes);
      await Promise.resolve();
    },
    truncate: async (p, length) => {
      const f = file(p, "truncate");
      files.set(
        abs(p),
        length <= f.byteLength ? f.slice(0, length) : _concat(f, new Uint8Array(length - f.byteLength)),
      );
      await Promise.resolve();
    },
    openRead: async (p): Promise<ReadableFile> => {
      const f = file(p, "open");
      await Promise.resolve();
      return {
        size: f.byteLength,
        read: (offset, into) => {
          if (offset >= f.byteLength) return Promise.resolve(into.byteLength === 0 ? 0 : null);
          const n = Math.min(into.byteLength, f.byteLength - offset);
          into.set(f.subarray(offset, offset + n));
          return Promise.resolve(n);
        },
        close: () => {},
      };
    },
    openWrite: async (p, options): Promise<WritableFile> => {
      if (options?.append) file(p, "open");
      else put(p, new Uint8Array(0));
      let at = options?.append ? file(p, "open").byteLength : 0;
      await Promise.resolve();
      return {
        write: (bytes) => {
          const f = files.get(abs(p)) ?? new Uint8Array(0);
          const out = at + bytes.byteLength <= f.byteLength
            ? f
            : _concat(f, new Uint8Array(at + bytes.byteLength - f.byteLength));
          out.set(bytes, at);
          files.set(abs(p), out);
          at += bytes.byteLength;
          return Promise.resolve(bytes.byteLength);
        },
        seek: (offset) => Promise.resolve(void (at = offset)),
        sync: () => Promise.resolve(),
        close: () => {},
      };
    },
    stat: async (p): Promise<FileInfo> => {
      await Promise.resolve();
      if (dirs.has(abs(p))) return { isFile: false, isDirectory: true, size: 0 };
      return { isFile: true, isDirectory: false, size: file(p, "stat").byteLength };
    },
    readDir: async function* (p): AsyncIterable<DirEntry> {
      if (!dirs.has(abs(p))) throw new NotFoundError(p, "readdir");
      const prefix = abs(p) === "/" ? "/" : `${abs(p)}/`;
      for (const k of [...dirs, ...files.keys()]) {
        if (k === "/" || !k.startsWith(prefix) || k.slice(prefix.length).includes("/")) continue;
        yield { name: k.slice(prefix.length), isFile: files.has(k), isDirectory: dirs.has(k) };
      }
    },
    mkdir: async (p, options) => {
      await Promise.resolve();
      if (dirs.has(abs(p)) && options?.recursive) return;
      if (dirs.has(abs(p)) || files.has(abs(p))) throw new Error(`File exists: mkdir '${p}'`);
      if (options?.recursive && !dirs.has(dirname(abs(p)))) await fs.mkdir(dirname(abs(p)), options);
      parent(p, "mkdir");
      dirs.add(abs(p));
    },
    remove: async (p, options) => {
      await Promise.resolve();
      if (files.delete(abs(p))) return;
      if (!dirs.has(abs(p))) throw new NotFoundError(p, "remove");
      const inside = under(p);
      if (inside.length > 0 && !options?.recursive) throw new Error(`Directory not empty: remove '${p}'`);
      for (const k of inside) files.delete(k) || dirs.delete(k);
      dirs.delete(abs(p));
    },
    rename: async (from, to) => {
      await Promise.resolve();
      parent(to, "rename");
      if (files.has(abs(from))) {
        files.set(abs(to), files.get(abs(from))!);
        files.delete(abs(from));
        return;
      }
      if (!dirs.has(abs(from))) throw new NotFoundError(from, "rename");
      if (files.has(abs(to)) || under(to).length > 0) throw new Error(`Directory not empty: rename '${from}' '${to}'`);
      for (const k of [abs(from), ...under(from)]) {
        const moved = abs(to) + k.slice(abs(from).length);
        if (files.has(k)) files.set(moved, files.get(k)!), files.delete(k);
        else dirs.add(moved), dirs.delete(k);
      }
    },
    copyFile: async (from, to) => await fs.writeFile(to, file(from, "copy")),
    isNotFound: (e) => e instanceof NotFoundError,
    cwd: () => "/",
    writerId: 1,
    alive: (id) => id === 1,
    stderr: consoleSink,
  };
  return fs;
}

function _concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
