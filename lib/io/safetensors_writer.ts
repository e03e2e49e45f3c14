/**
 * Writing safetensors files as a stream: the header first (tensor names, dtypes and shapes are declared up
 * front), then each tensor's bytes in order, into a temporary file that is renamed into place on `close`.
 *
 * @module
 */

import { storage, type WritableFile } from "../platform/storage.ts";
import { _namingPath, _tempName, _writeAll } from "./_file.ts";
import {
  encodeSafetensorsHeader,
  type SafetensorsDType,
  type SafetensorsTensorInfo,
  type SafetensorsTensorSpec,
} from "./safetensors_header.ts";

/** A tensor with its data, for {@linkcode writeSafetensors}. */
export interface SafetensorsTensorData {
  /** Tensor name. */
  name: string;
  /** Element type. */
  dtype: SafetensorsDType;
  /** Dimensions. */
  shape: readonly number[];
  /** Raw little-endian bytes (`numel(shape) × dtype size` of them). */
  data: Uint8Array;
}

/** Options of {@linkcode SafetensorsWriter.create}. */
export interface SafetensorsWriterOptions {
  /** `__metadata__` strings (default `{ format: "pt" }`, which transformers expects). */
  metadata?: Readonly<Record<string, string>>;
  /** Extra header room (bytes) for tensors added with {@linkcode SafetensorsWriter.append} (default 0). */
  reserveHeaderBytes?: number;
}

/**
 * Streams a safetensors file: declare the tensors, then {@linkcode SafetensorsWriter.write} each one in
 * the declared order, then {@linkcode SafetensorsWriter.close}. Nothing appears at `path` until `close`
 * succeeds; {@linkcode SafetensorsWriter.abort} discards the file, as does any failed call (a full disk
 * included: its error names `path`), so no temporary file is left behind.
 *
 * @example Stream two tensors
 * ```ts
 * import { SafetensorsFile, SafetensorsWriter } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const path = (await Deno.makeTempDir()) + "/m.safetensors";
 * const w = await SafetensorsWriter.create(path, [
 *   { name: "a", dtype: "U8", shape: [2] },
 *   { name: "b", dtype: "U8", shape: [1] },
 * ]);
 * await w.write("a", new Uint8Array([1, 2]));
 * await w.write("b", new Uint8Array([3]));
 * await w.close();
 * using f = await SafetensorsFile.open(path);
 * assert.deepEqual([...await f.read("b")], [3]);
 * ```
 */
export class SafetensorsWriter {
  /** Final path of the file. */
  readonly path: string;
  #tensors: SafetensorsTensorInfo[];
  #declared: number;
  #metadata: Readonly<Record<string, string>>;
  #jsonBytes: number;
  #tmp: string;
  #file: WritableFile | null;
  #index = 0;
  #filled = 0;

  private constructor(
    path: string,
    tmp: string,
    file: WritableFile,
    header: { tensors: SafetensorsTensorInfo[]; metadata: Readonly<Record<string, string>>; jsonBytes: number },
  ) {
    this.path = path;
    this.#tmp = tmp;
    this.#file = file;
    this.#tensors = header.tensors;
    this.#declared = header.tensors.length;
    this.#metadata = header.metadata;
    this.#jsonBytes = header.jsonBytes;
  }

  /**
   * Creates the temporary file and writes the header.
   *
   * @param path Final path.
   * @param specs Tensors, in the order their data will be written.
   * @param options `metadata`: `__metadata__` strings (default `{ format: "pt" }`, which transformers expects);
   * `reserveHeaderBytes`: room left in the header for tensors added later with {@linkcode SafetensorsWriter.append}.
   * @returns A writer expecting the first tensor.
   */
  static async create(
    path: string,
    specs: readonly SafetensorsTensorSpec[],
    options: SafetensorsWriterOptions = {},
  ): Promise<SafetensorsWriter> {
    const metadata = options.metadata ?? { format: "pt" };
    const plain = encodeSafetensorsHeader(specs, metadata);
    const { bytes, tensors } = encodeSafetensorsHeader(
      specs,
      metadata,
      plain.bytes.byteLength - 8 + (options.reserveHeaderBytes ?? 0),
    );
    const tmp = _tempName(path);
    const file = await storage().openWrite(tmp);
    const w = new SafetensorsWriter(path, tmp, file, { tensors, metadata, jsonBytes: bytes.byteLength - 8 });
    await w.#orAbort(() => _writeAll(file, bytes, path));
    return w;
  }

  /** The tensors with their offsets: those declared, then those appended. */
  get tensors(): readonly SafetensorsTensorInfo[] {
    return this.#tensors;
  }

  /**
   * Adds a tensor that was not declared up front (e.g. one whose size is known only once computed) after
   * every tensor so far, and writes its bytes. The header is rewritten on {@linkcode SafetensorsWriter.close},
   * in the room reserved by `reserveHeaderBytes`.
   *
   * @param spec The new tensor's name, dtype and shape.
   * @param data All its bytes.
   */
  async append(spec: SafetensorsTensorSpec, data: Uint8Array): Promise<void> {
    const last = this.#tensors[this.#tensors.length - 1];
    const begin = last ? last.end : 0;
    const info = encodeSafetensorsHeader([spec]).tensors[0];
    if (this.#tensors.some((t) => t.name === spec.name)) {
      await this.abort();
      throw new Error(`${this.path}: tensor "${spec.name}" is repeated`);
    }
    this.#tensors.push({ ...info, begin, end: begin + info.end });
    await this.write(spec.name, data);
  }

  /**
   * Writes the next tensor's bytes. Names must come in the declared order; the data may come in several
   * calls for the same name (chunks), as long as their total is the tensor's size.
   *
   * @param name The tensor being written (checked against the declared order).
   * @param data Its bytes, or the next chunk of them.
   */
  async write(name: string, data: Uint8Array): Promise<void> {
    const file = this.#open();
    this.#skipFinished(name);
    const t = this.tensors[this.#index];
    if (!t || t.name !== name) {
      await this.abort();
      throw new Error(`${this.path}: tensor "${name}" written out of order (expected ${t ? `"${t.name}"` : "none"})`);
    }
    if (this.#filled + data.byteLength > t.end - t.begin) {
      await this.abort();
      throw new Error(
        `${this.path}: tensor "${name}" got ${this.#filled + data.byteLength} bytes, declared ${t.end - t.begin} ` +
          `(${t.dtype} [${t.shape}])`,
      );
    }
    await this.#orAbort(() => _writeAll(file, data, this.path));
    this.#filled += data.byteLength;
  }

  /**
   * Checks every declared byte was written, flushes, and renames the file into place.
   *
   * @throws {Error} If tensors are missing (the temporary file is removed).
   */
  async close(): Promise<void> {
    const file = this.#open();
    this.#skipFinished(null);
    if (this.#index < this.tensors.length) {
      const missing = this.tensors[this.#index];
      await this.abort();
      throw new Error(`${this.path}: closed before tensor "${missing.name}" was fully written`);
    }
    if (this.#tensors.length > this.#declared) await this.#rewriteHeader(file);
    await this.#orAbort(async () => {
      await file.sync();
      file.close();
      this.#file = null;
      await storage().rename(this.#tmp, this.path);
    });
  }

  /** Discards the temporary file; `path` is left as it was. */
  async abort(): Promise<void> {
    this.#file?.close();
    this.#file = null;
    await storage().remove(this.#tmp).catch(() => {});
  }

  /** Moves past fully written tensors (zero-byte ones need no write), stopping at one named `name`. */
  #skipFinished(name: string | null): void {
    for (let t = this.tensors[this.#index]; t && this.#filled === t.end - t.begin; t = this.tensors[this.#index]) {
      if (t.name === name && this.#filled === 0) return;
      this.#index++;
      this.#filled = 0;
    }
  }

  async #rewriteHeader(file: WritableFile): Promise<void> {
    const { bytes } = encodeSafetensorsHeader(this.#tensors, this.#metadata, this.#jsonBytes);
    if (bytes.byteLength - 8 !== this.#jsonBytes) {
      await this.abort();
      throw new Error(
        `${this.path}: header needs ${bytes.byteLength - 8} bytes but ${this.#jsonBytes} were reserved ` +
          `(raise reserveHeaderBytes)`,
      );
    }
    await this.#orAbort(async () => {
      await file.seek(0);
      await _writeAll(file, bytes, this.path);
    });
  }

  /** Runs a file operation; if it fails, discards the file and rethrows, naming `path`. */
  async #orAbort(op: () => Promise<unknown>): Promise<void> {
    try {
      await op();
    } catch (e) {
      await this.abort();
      throw _namingPath(e, this.path);
    }
  }

  #open(): WritableFile {
    if (!this.#file) throw new Error(`${this.path}: writer is closed`);
    return this.#file;
  }
}

/**
 * Writes a whole safetensors file from tensors held in memory (atomically: temporary name, then rename).
 *
 * @param path Destination.
 * @param tensors Tensors in data order.
 * @param metadata `__metadata__` strings (default `{ format: "pt" }`).
 *
 * @example
 * ```ts
 * import { SafetensorsFile, writeSafetensors } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const path = await Deno.makeTempFile({ suffix: ".safetensors" });
 * await writeSafetensors(path, [{ name: "x", dtype: "U8", shape: [2, 1], data: new Uint8Array([7, 9]) }]);
 * using f = await SafetensorsFile.open(path);
 * assert.deepEqual(f.info("x").shape, [2, 1]);
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsTensorData[],
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const w = await SafetensorsWriter.create(path, tensors, { metadata });
  for (const t of tensors) await w.write(t.name, t.data);
  await w.close();
}
