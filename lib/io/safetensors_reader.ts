/**
 * Reading one safetensors file: the header is read and validated on open, then tensors are read one at a time
 * by seeking, so a 13.5 GB checkpoint never sits in memory whole.
 *
 * @module
 */

import { bytesToF32 } from "../dtype.ts";
import { type ReadableFile, storage } from "../platform/storage.ts";
import { _readAt } from "./_file.ts";
import {
  parseSafetensorsHeader,
  parseSafetensorsHeaderLength,
  type SafetensorsHeader,
  type SafetensorsTensorInfo,
  safetensorsToDType,
} from "./safetensors_header.ts";

/**
 * An open safetensors file. Close it with {@linkcode SafetensorsFile.close} (or `using`).
 *
 * @example Read a tensor
 * ```ts
 * import { SafetensorsFile, writeSafetensors } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile({ suffix: ".safetensors" });
 * const data = new Uint8Array(new Float32Array([1, 2, 3]).buffer);
 * await writeSafetensors(path, [{ name: "w", dtype: "F32", shape: [3], data }]);
 * using f = await SafetensorsFile.open(path);
 * assert.deepEqual(f.names(), ["w"]);
 * assert.deepEqual([...await f.readF32("w")], [1, 2, 3]);
 * ```
 */
export class SafetensorsFile {
  /** Path the file was opened from (names it in errors). */
  readonly path: string;
  /** The validated header. */
  readonly header: SafetensorsHeader;
  /** File size in bytes. */
  readonly size: number;
  #file: ReadableFile;
  #byName: Map<string, SafetensorsTensorInfo>;

  private constructor(path: string, file: ReadableFile, header: SafetensorsHeader, size: number) {
    this.path = path;
    this.header = header;
    this.size = size;
    this.#file = file;
    this.#byName = new Map(header.tensors.map((t) => [t.name, t]));
  }

  /**
   * Opens a file and validates its header (see {@linkcode parseSafetensorsHeader}).
   *
   * @param path The `.safetensors` file.
   * @returns The open file.
   * @throws {Error} Naming the file (and the tensor) when it is missing, truncated or malformed.
   */
  static async open(path: string): Promise<SafetensorsFile> {
    let file: ReadableFile;
    try {
      file = await storage().openRead(path);
    } catch (e) {
      throw new Error(`${path}: cannot open safetensors file: ${(e as Error).message}`);
    }
    try {
      const size = file.size;
      const prefix = size >= 8 ? await _readAt(file, 0, 8, path) : new Uint8Array(0);
      const n = parseSafetensorsHeaderLength(prefix, size, path);
      const json = await _readAt(file, 8, n, `${path}: header`);
      const header = parseSafetensorsHeader(json, size - 8 - n, path);
      return new SafetensorsFile(path, file, header, size);
    } catch (e) {
      file.close();
      throw e;
    }
  }

  /** The `__metadata__` strings (empty when absent). */
  get metadata(): Readonly<Record<string, string>> {
    return this.header.metadata;
  }

  /** Tensor names, in data order. */
  names(): string[] {
    return this.header.tensors.map((t) => t.name);
  }

  /** Whether the file holds a tensor of this name. */
  has(name: string): boolean {
    return this.#byName.has(name);
  }

  /**
   * A tensor's dtype, shape and offsets.
   *
   * @throws {Error} If the file has no such tensor.
   */
  info(name: string): SafetensorsTensorInfo {
    const t = this.#byName.get(name);
    if (!t) throw new Error(`${this.path}: no tensor "${name}"`);
    return t;
  }

  /**
   * Reads one tensor's raw little-endian bytes from disk.
   *
   * @param name Tensor name.
   * @returns A fresh buffer of exactly the tensor's bytes.
   */
  async read(name: string): Promise<Uint8Array> {
    const t = this.info(name);
    const at = this.header.dataOffset + t.begin;
    return await _readAt(this.#file, at, t.end - t.begin, `${this.path}: tensor "${name}"`);
  }

  /**
   * Reads a floating-point tensor (F32, F16, BF16) as float32 values.
   *
   * @throws {Error} Naming the tensor for other dtypes.
   */
  async readF32(name: string): Promise<Float32Array> {
    const t = this.info(name);
    const dtype = safetensorsToDType(t.dtype);
    if (dtype !== "f32" && dtype !== "f16" && dtype !== "bf16") {
      throw new Error(`${this.path}: tensor "${name}" is ${t.dtype}, not a float tensor`);
    }
    return bytesToF32(await this.read(name), dtype);
  }

  /** Closes the file handle. */
  close(): void {
    this.#file.close();
  }

  /** Closes the file handle (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
