/**
 * The storage interface every file the library reads or writes goes through: whole and streaming reads, streaming
 * writes, folders, rename (the atomic-write primitive), the writer's id for temporary names, and the stream where
 * progress goes. Implemented with Deno's file system (`deno.ts`, the default under Deno), the browser's origin
 * private file system (`opfs.ts`) and memory (`memory.ts`, for tests and in-page demo models).
 *
 * @module
 */

import { denoStorage } from "./deno.ts";

/** What {@linkcode Storage.stat} says of a path. */
export interface FileInfo {
  /** A file. */
  readonly isFile: boolean;
  /** A folder. */
  readonly isDirectory: boolean;
  /** Bytes (0 for a folder). */
  readonly size: number;
}

/** One entry of {@linkcode Storage.readDir}. */
export interface DirEntry {
  /** The entry's name (no folder). */
  readonly name: string;
  /** A file. */
  readonly isFile: boolean;
  /** A folder. */
  readonly isDirectory: boolean;
}

/** A file open for positioned reads (large files are read piece by piece, never whole). */
export interface ReadableFile {
  /** Bytes in the file when it was opened. */
  readonly size: number;
  /** Reads up to `into.byteLength` bytes at `offset`; the count read, or null at the end of the file. */
  read(offset: number, into: Uint8Array): Promise<number | null>;
  /** Releases the handle. */
  close(): void;
}

/** A file open for writing at a cursor (after its last byte when opened to append). */
export interface WritableFile {
  /** Writes some of `bytes` at the cursor and moves it; the count written (a write may write fewer). */
  write(bytes: Uint8Array): Promise<number>;
  /** Moves the cursor to `offset` from the start. */
  seek(offset: number): Promise<void>;
  /** Flushes what was written to the medium (before a rename makes it the real file). */
  sync(): Promise<void>;
  /** Releases the handle (call {@linkcode WritableFile.sync} first where the bytes must be in place now). */
  close(): void;
}

/** Where progress lines go (a terminal's stderr, or a page's console). */
export interface TextSink {
  /** Writes bytes; the count written. */
  writeSync(bytes: Uint8Array): number;
  /** Whether it is a terminal (a bar redrawn in place) or a log (one line per update). */
  isTerminal(): boolean;
}

/** A file system: paths are `/`-separated; errors for a missing path satisfy {@linkcode Storage.isNotFound}. */
export interface Storage {
  /** The whole file. */
  readFile(path: string): Promise<Uint8Array>;
  /** The whole file as UTF-8 text. */
  readTextFile(path: string): Promise<string>;
  /** Writes (or appends to) a file directly, not atomically: for logs and scratch files. */
  writeFile(path: string, data: Uint8Array | string, options?: { append?: boolean }): Promise<void>;
  /** Cuts a file to `length` bytes. */
  truncate(path: string, length: number): Promise<void>;
  /** Opens a file for positioned reads. */
  openRead(path: string): Promise<ReadableFile>;
  /** Opens a file for writing: emptied (created if missing), or, with `append`, at its end (it must exist). */
  openWrite(path: string, options?: { append?: boolean }): Promise<WritableFile>;
  /** Whether `path` is a file or folder, and its size. */
  stat(path: string): Promise<FileInfo>;
  /** A folder's entries, in no particular order. */
  readDir(path: string): AsyncIterable<DirEntry>;
  /** Makes a folder (and, with `recursive`, its parents; then an existing folder is no error). */
  mkdir(path: string, options?: { recursive?: boolean }): Promise<void>;
  /** Removes a file or folder (a non-empty folder only with `recursive`). */
  remove(path: string, options?: { recursive?: boolean }): Promise<void>;
  /** Moves `from` to `to`, replacing a file (or empty folder) there: the last step of an atomic write. */
  rename(from: string, to: string): Promise<void>;
  /** Copies a file. */
  copyFile(from: string, to: string): Promise<void>;
  /** Whether `e` says a path does not exist. */
  isNotFound(e: unknown): boolean;
  /** The folder relative paths start from. */
  cwd(): string;
  /** This writer's id in temporary names (a process id under Deno). */
  readonly writerId: number;
  /** Whether the writer `id` of a temporary name may still be writing (its process runs). */
  alive(id: number): boolean;
  /** Where progress lines go by default. */
  readonly stderr: TextSink;
}

/**
 * Progress lines to the console, one line per write (a page has no stderr).
 *
 * @example
 * ```ts
 * import { consoleSink } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * assert.equal(consoleSink.isTerminal(), false);
 * ```
 */
export const consoleSink: TextSink = {
  writeSync: (b) => (console.log(new TextDecoder().decode(b).replace(/\n$/, "")), b.byteLength),
  isTerminal: () => false,
};

let current: Storage | undefined;

/**
 * The storage the library uses: the one set with {@linkcode setStorage}, else Deno's file system under Deno.
 *
 * @returns The storage.
 * @throws {Error} Outside Deno when none was set (in a browser, set `await opfsStorage()`).
 *
 * @example
 * ```ts
 * import { storage } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * assert.equal(typeof storage().readFile, "function");
 * ```
 */
export function storage(): Storage {
  current ??= denoStorage();
  if (!current) throw new Error("No storage set: call setStorage(await opfsStorage()) or setStorage(memoryStorage())");
  return current;
}

/**
 * Makes `s` the storage every reader and writer uses from now on.
 *
 * @param s The storage, or undefined for the default.
 * @returns The storage used before.
 *
 * @example Files in memory
 * ```ts
 * import { memoryStorage, setStorage, storage } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * const before = setStorage(memoryStorage());
 * await storage().writeFile("/a.txt", "hi");
 * assert.equal(await storage().readTextFile("/a.txt"), "hi");
 * setStorage(before);
 * ```
 */
export function setStorage(s: Storage | undefined): Storage | undefined {
  const before = current;
  current = s;
  return before;
}
