/**
 * The safetensors header: dtypes, parsing with validation, and encoding. Pure functions over bytes, so they are
 * tested without files; {@linkcode SafetensorsFile} and {@linkcode SafetensorsWriter} do the I/O.
 *
 * Layout: an 8-byte little-endian header length `N`, `N` bytes of JSON (padded with spaces to a multiple of 8),
 * then the data section. The JSON maps each tensor name to `{dtype, shape, data_offsets: [begin, end]}` (byte
 * offsets into the data section), plus an optional `__metadata__` map of strings.
 *
 * @module
 */

import type { DType } from "../dtype.ts";
import { numel } from "../gpu/tensor.ts";

/** Element types safetensors files may hold. */
export type SafetensorsDType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL"
  | "F8_E4M3"
  | "F8_E5M2";

/** Bytes per element of each {@linkcode SafetensorsDType}. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** Largest header accepted, as in the reference implementation (100 MB). */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;

/** One tensor's entry in a safetensors header. */
export interface SafetensorsTensorInfo {
  /** Tensor name, e.g. `model.layers.0.self_attn.q_proj.weight`. */
  readonly name: string;
  /** Element type. */
  readonly dtype: SafetensorsDType;
  /** Dimensions, row-major (`[]` for a scalar). */
  readonly shape: readonly number[];
  /** Byte offset of the data in the data section. */
  readonly begin: number;
  /** Byte offset one past the end of the data in the data section. */
  readonly end: number;
}

/** A tensor to be written: name, dtype and shape (the offsets follow from the order). */
export interface SafetensorsTensorSpec {
  /** Tensor name. */
  readonly name: string;
  /** Element type. */
  readonly dtype: SafetensorsDType;
  /** Dimensions. */
  readonly shape: readonly number[];
}

/** A parsed, validated header. */
export interface SafetensorsHeader {
  /** The `__metadata__` map (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors in file order (by data offset). */
  readonly tensors: readonly SafetensorsTensorInfo[];
  /** Absolute file offset of the data section (`8 + N`). */
  readonly dataOffset: number;
}

const TOOLKIT_DTYPES: Partial<Record<SafetensorsDType, DType>> = {
  F32: "f32",
  F16: "f16",
  BF16: "bf16",
  U32: "u32",
  I32: "i32",
  U8: "u8",
};

/**
 * The toolkit {@linkcode DType} for a safetensors dtype, if the toolkit has one.
 *
 * @param dtype A safetensors dtype.
 * @returns The matching DType, or `undefined` (e.g. for `F64`, `I64`, `BOOL`).
 *
 * @example
 * ```ts
 * import { safetensorsToDType } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * assert.equal(safetensorsToDType("BF16"), "bf16");
 * assert.equal(safetensorsToDType("I64"), undefined);
 * ```
 */
export function safetensorsToDType(dtype: SafetensorsDType): DType | undefined {
  return TOOLKIT_DTYPES[dtype];
}

/**
 * The safetensors dtype for a toolkit {@linkcode DType}.
 *
 * @param dtype A toolkit dtype.
 * @returns Its safetensors name (`f32` → `F32`, `bf16` → `BF16`, ...).
 *
 * @example
 * ```ts
 * import { dtypeToSafetensors } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * assert.equal(dtypeToSafetensors("u8"), "U8");
 * ```
 */
export function dtypeToSafetensors(dtype: DType): SafetensorsDType {
  return dtype.toUpperCase() as SafetensorsDType;
}

/**
 * Bytes of data a tensor of this dtype and shape holds.
 *
 * @param dtype Element type.
 * @param shape Dimensions.
 * @returns `numel(shape) * bytes per element`.
 *
 * @example
 * ```ts
 * import { safetensorsByteLength } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * assert.equal(safetensorsByteLength("BF16", [3, 4]), 24);
 * ```
 */
export function safetensorsByteLength(dtype: SafetensorsDType, shape: readonly number[]): number {
  return numel(shape) * SAFETENSORS_DTYPE_BYTES[dtype];
}

/**
 * Reads the header length from the first 8 bytes and checks it against the file size.
 *
 * @param prefix At least the first 8 bytes of the file.
 * @param fileSize Total file size in bytes.
 * @param path Names the file in errors.
 * @returns `N`, the JSON length in bytes.
 * @throws {Error} If the file is too short, or `N` is too large or runs past the end of the file.
 *
 * @example
 * ```ts
 * import { parseSafetensorsHeaderLength } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const prefix = new Uint8Array(8);
 * new DataView(prefix.buffer).setBigUint64(0, 16n, true);
 * assert.equal(parseSafetensorsHeaderLength(prefix, 24, "a.safetensors"), 16);
 * assert.throws(() => parseSafetensorsHeaderLength(prefix, 20, "a.safetensors"), /a\.safetensors/);
 * ```
 */
export function parseSafetensorsHeaderLength(prefix: Uint8Array, fileSize: number, path: string): number {
  if (fileSize < 8 || prefix.byteLength < 8) {
    throw new Error(`${path}: ${fileSize} bytes is too short for a safetensors file (needs an 8-byte header length)`);
  }
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(SAFETENSORS_MAX_HEADER_BYTES)) {
    throw new Error(`${path}: header length ${n} exceeds the ${SAFETENSORS_MAX_HEADER_BYTES}-byte limit`);
  }
  if (8n + n > BigInt(fileSize)) {
    throw new Error(`${path}: header length ${n} runs past the end of the file (${fileSize} bytes): truncated file`);
  }
  return Number(n);
}

/**
 * Parses and validates a header's JSON: every entry has a known dtype, a shape of non-negative integers, and
 * `data_offsets` whose span equals `numel(shape) × dtype size`, inside the data section and not overlapping
 * another tensor.
 *
 * @param json The `N` header bytes (UTF-8 JSON, possibly space-padded).
 * @param dataBytes Size of the data section (file size − 8 − N).
 * @param path Names the file in errors.
 * @returns The header, tensors sorted by offset.
 * @throws {Error} Naming the file and the key at fault.
 *
 * @example
 * ```ts
 * import { parseSafetensorsHeader } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const json = new TextEncoder().encode('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}');
 * const h = parseSafetensorsHeader(json, 8, "m.safetensors");
 * assert.deepEqual(h.tensors[0].shape, [2]);
 * assert.throws(() => parseSafetensorsHeader(json, 4, "m.safetensors"), /m\.safetensors: tensor "w"/);
 * ```
 */
export function parseSafetensorsHeader(json: Uint8Array, dataBytes: number, path: string): SafetensorsHeader {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(json));
  } catch (e) {
    throw new Error(`${path}: header is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (!_isObject(raw)) throw new Error(`${path}: header is not a JSON object`);
  let metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, entry] of Object.entries(raw)) {
    if (name === "__metadata__") {
      metadata = _parseMetadata(entry, path);
    } else {
      tensors.push(_parseEntry(name, entry, dataBytes, path));
    }
  }
  tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < tensors.length; i++) {
    const prev = tensors[i - 1];
    const cur = tensors[i];
    if (cur.begin < prev.end) {
      throw new Error(
        `${path}: tensor "${cur.name}" data [${cur.begin}, ${cur.end}) overlaps tensor "${prev.name}" ` +
          `[${prev.begin}, ${prev.end})`,
      );
    }
  }
  return { metadata, tensors, dataOffset: 8 + json.byteLength };
}

/**
 * Encodes a header for tensors laid out back to back in the given order, padded with spaces to a multiple of
 * 8 bytes as the reference writer does (readers accept any trailing spaces, which lets a writer reserve room).
 *
 * @param specs Tensors in data order.
 * @param metadata Optional `__metadata__` strings (e.g. `{ format: "pt" }`, which transformers expects).
 * @param minJsonBytes Pad the JSON with spaces to at least this many bytes (default 0).
 * @returns The full prefix (8-byte length + JSON) and the tensors with their offsets.
 * @throws {Error} On a duplicate or reserved name, an unknown dtype, or a bad shape.
 *
 * @example
 * ```ts
 * import { encodeSafetensorsHeader } from "@qlora/webgpu/io";
 * import assert from "node:assert/strict";
 * const { bytes, tensors } = encodeSafetensorsHeader([{ name: "w", dtype: "F32", shape: [2] }]);
 * assert.equal(bytes.byteLength % 8, 0);
 * assert.deepEqual([tensors[0].begin, tensors[0].end], [0, 8]);
 * ```
 */
export function encodeSafetensorsHeader(
  specs: readonly SafetensorsTensorSpec[],
  metadata?: Readonly<Record<string, string>>,
  minJsonBytes = 0,
): { bytes: Uint8Array; tensors: SafetensorsTensorInfo[] } {
  const parts: string[] = [];
  if (metadata && Object.keys(metadata).length > 0) parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  const tensors: SafetensorsTensorInfo[] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const s of specs) {
    if (s.name === "__metadata__" || seen.has(s.name)) {
      throw new Error(`Safetensors writer: tensor name "${s.name}" is ${seen.has(s.name) ? "repeated" : "reserved"}`);
    }
    seen.add(s.name);
    if (!(s.dtype in SAFETENSORS_DTYPE_BYTES)) {
      throw new Error(`Safetensors writer: tensor "${s.name}" dtype ${s.dtype}`);
    }
    if (!s.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`Safetensors writer: tensor "${s.name}" has bad shape [${s.shape}]`);
    }
    const end = offset + safetensorsByteLength(s.dtype, s.shape);
    tensors.push({ name: s.name, dtype: s.dtype, shape: [...s.shape], begin: offset, end });
    // Built by hand so that key order is data order (JS objects reorder integer-like keys).
    parts.push(
      `${JSON.stringify(s.name)}:{"dtype":"${s.dtype}","shape":[${
        s.shape.join(",")
      }],"data_offsets":[${offset},${end}]}`,
    );
    offset = end;
  }
  let json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const padded = Math.ceil(Math.max(json.byteLength, minJsonBytes) / 8) * 8;
  if (padded !== json.byteLength) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const bytes = new Uint8Array(8 + json.byteLength);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  bytes.set(json, 8);
  return { bytes, tensors };
}

function _isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function _parseMetadata(entry: unknown, path: string): Record<string, string> {
  if (!_isObject(entry)) throw new Error(`${path}: "__metadata__" is not an object of strings`);
  for (const [k, v] of Object.entries(entry)) {
    if (typeof v !== "string") throw new Error(`${path}: "__metadata__" key "${k}" is not a string`);
  }
  return entry as Record<string, string>;
}

function _parseEntry(name: string, entry: unknown, dataBytes: number, path: string): SafetensorsTensorInfo {
  const where = `${path}: tensor "${name}"`;
  if (!_isObject(entry)) throw new Error(`${where}: entry is not an object`);
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== "string" || !(dtype in SAFETENSORS_DTYPE_BYTES)) {
    throw new Error(`${where}: unknown dtype ${JSON.stringify(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[1] < offsets[0]
  ) {
    throw new Error(`${where}: data_offsets ${JSON.stringify(offsets)} is not [begin, end] with begin <= end`);
  }
  const st = dtype as SafetensorsDType;
  const [begin, end] = offsets as number[];
  const want = safetensorsByteLength(st, shape);
  if (end - begin !== want) {
    throw new Error(
      `${where}: shape [${shape}] ${st} needs ${want} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`,
    );
  }
  if (end > dataBytes) {
    throw new Error(
      `${where}: data_offsets [${begin}, ${end}] run past the data section (${dataBytes} bytes): truncated file?`,
    );
  }
  return { name, dtype: st, shape, begin, end };
}
