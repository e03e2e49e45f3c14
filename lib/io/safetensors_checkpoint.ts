/**
 * A checkpoint made of one or more safetensors files: a single file, a folder with `model.safetensors`, a
 * sharded folder with `model.safetensors.index.json` (its `weight_map` names each tensor's shard), or any
 * folder of `.safetensors` files. Tensors are looked up by name and read one at a time.
 *
 * @module
 */

import { dirname, join } from "../platform/path.ts";
import { _exists, _partialNote } from "./_file.ts";
import { readJsonFile } from "./json_file.ts";
import { SafetensorsFile } from "./safetensors_reader.ts";
import type { SafetensorsTensorInfo } from "./safetensors_header.ts";
import { type FileInfo, storage } from "../platform/storage.ts";

/** File name of a sharded checkpoint's index, as transformers writes it. */
export const SAFETENSORS_INDEX_FILE = "model.safetensors.index.json";

/**
 * The open files of a checkpoint and a name → file map. Close it with {@linkcode SafetensorsCheckpoint.close}.
 *
 * @example Open a folder
 * ```ts
 * import { SafetensorsCheckpoint, writeSafetensors } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await writeSafetensors(`${dir}/model.safetensors`, [{ name: "w", dtype: "U8", shape: [1], data: new Uint8Array([5]) }]);
 * using ckpt = await SafetensorsCheckpoint.open(dir);
 * assert.deepEqual(ckpt.names(), ["w"]);
 * assert.deepEqual([...await ckpt.read("w")], [5]);
 * ```
 */
export class SafetensorsCheckpoint {
  /** The folder (or file) the checkpoint was opened from. */
  readonly path: string;
  /** The open files, in name order. */
  readonly files: readonly SafetensorsFile[];
  /** The index file's path when the checkpoint is sharded with one. */
  readonly indexPath: string | null;
  #where: Map<string, SafetensorsFile>;

  private constructor(
    path: string,
    files: SafetensorsFile[],
    where: Map<string, SafetensorsFile>,
    index: string | null,
  ) {
    this.path = path;
    this.files = files;
    this.#where = where;
    this.indexPath = index;
  }

  /**
   * Opens a checkpoint.
   *
   * @param path A `.safetensors` file, an index `.json` file, or a folder.
   * @returns The checkpoint with every file's header validated.
   * @throws {Error} If the folder holds no safetensors files, a name appears in two files, or the index names a
   * missing file or a tensor its shard does not hold.
   */
  static async open(path: string): Promise<SafetensorsCheckpoint> {
    let stat: FileInfo;
    try {
      stat = await storage().stat(path);
    } catch (e) {
      throw new Error(`${path}: cannot open checkpoint: ${(e as Error).message}${await _partialNote(path)}`);
    }
    if (stat.isFile && path.endsWith(".json")) return await SafetensorsCheckpoint.#fromIndex(dirname(path), path);
    if (stat.isFile) return await SafetensorsCheckpoint.#fromFiles(path, [path]);
    const index = join(path, SAFETENSORS_INDEX_FILE);
    if (await _exists(index)) return await SafetensorsCheckpoint.#fromIndex(path, index);
    const names = await listSafetensorsFiles(path);
    if (names.length === 0) throw new Error(`${path}: no .safetensors files in the folder`);
    return await SafetensorsCheckpoint.#fromFiles(path, names.map((n) => join(path, n)));
  }

  static async #fromFiles(path: string, paths: string[]): Promise<SafetensorsCheckpoint> {
    const files = await _openAll(paths);
    const where = new Map<string, SafetensorsFile>();
    for (const f of files) {
      for (const name of f.names()) {
        const other = where.get(name);
        if (other) {
          _closeAll(files);
          throw new Error(`${path}: tensor "${name}" is in both ${other.path} and ${f.path}`);
        }
        where.set(name, f);
      }
    }
    return new SafetensorsCheckpoint(path, files, where, null);
  }

  static async #fromIndex(dir: string, indexPath: string): Promise<SafetensorsCheckpoint> {
    const index = await readJsonFile(indexPath);
    const map = index.weight_map;
    if (typeof map !== "object" || map === null || Array.isArray(map)) {
      throw new Error(`${indexPath}: "weight_map" is missing or not an object`);
    }
    const shards = [...new Set(Object.values(map))].sort();
    for (const [key, shard] of Object.entries(map)) {
      if (typeof shard !== "string" || shard.includes("/") || shard.includes("\\")) {
        throw new Error(`${indexPath}: weight_map["${key}"] = ${JSON.stringify(shard)} is not a file name`);
      }
    }
    const files = await _openAll(shards.map((s) => join(dir, s as string)));
    const byShard = new Map(shards.map((s, i) => [s as string, files[i]]));
    const where = new Map<string, SafetensorsFile>();
    for (const [key, shard] of Object.entries(map)) {
      const f = byShard.get(shard as string)!;
      if (!f.has(key)) {
        _closeAll(files);
        throw new Error(`${indexPath}: weight_map["${key}"] names ${f.path}, which has no tensor "${key}"`);
      }
      where.set(key, f);
    }
    return new SafetensorsCheckpoint(dir, files, where, indexPath);
  }

  /** Every tensor name, in file then data order. */
  names(): string[] {
    return this.files.flatMap((f) => f.names().filter((n) => this.#where.get(n) === f));
  }

  /** Whether the checkpoint holds a tensor of this name. */
  has(name: string): boolean {
    return this.#where.has(name);
  }

  /**
   * The file holding a tensor.
   *
   * @throws {Error} Naming the checkpoint and the tensor if there is none.
   */
  fileOf(name: string): SafetensorsFile {
    const f = this.#where.get(name);
    if (!f) throw new Error(`${this.path}: no tensor "${name}" in the checkpoint`);
    return f;
  }

  /** A tensor's dtype, shape and offsets. */
  info(name: string): SafetensorsTensorInfo {
    return this.fileOf(name).info(name);
  }

  /** Reads one tensor's raw bytes. */
  read(name: string): Promise<Uint8Array> {
    return this.fileOf(name).read(name);
  }

  /** Reads a float tensor (F32, F16, BF16) as float32. */
  readF32(name: string): Promise<Float32Array> {
    return this.fileOf(name).readF32(name);
  }

  /** Closes every file. */
  close(): void {
    _closeAll(this.files);
  }

  /** Closes every file (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Names of the `.safetensors` files directly in a folder, sorted.
 *
 * @param dir The folder.
 * @returns File names (not paths).
 *
 * @example
 * ```ts
 * import { listSafetensorsFiles } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/config.json`, "{}");
 * assert.deepEqual(await listSafetensorsFiles(dir), []);
 * ```
 */
export async function listSafetensorsFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of storage().readDir(dir)) {
    if (e.isFile && e.name.endsWith(".safetensors")) names.push(e.name);
  }
  return names.sort();
}

async function _openAll(paths: string[]): Promise<SafetensorsFile[]> {
  const files: SafetensorsFile[] = [];
  try {
    for (const p of paths) files.push(await SafetensorsFile.open(p));
  } catch (e) {
    _closeAll(files);
    throw e;
  }
  return files;
}

function _closeAll(files: readonly SafetensorsFile[]): void {
  for (const f of files) f.close();
}
