/**
 * CRC-32 (IEEE 802.3, zlib's), for checksums in files the library writes.
 *
 * @module
 */

const TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/**
 * The CRC-32 of `bytes`, continuing from `crc` (the value for the bytes before them), as zlib's `crc32` gives it.
 *
 * @param bytes The data.
 * @param crc The CRC so far (0 for a start).
 * @returns The CRC, an unsigned 32-bit integer.
 *
 * @example
 * ```ts
 * import { crc32 } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
 * ```
 */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
