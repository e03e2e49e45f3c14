/**
 * Byte counts as people write them: parsing `"6GiB"`-style sizes (budgets, limits, flags) and formatting counts
 * for messages.
 *
 * @module
 */

const UNITS: Record<string, number> = {
  "": 1,
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
};

/**
 * Parses a byte count: a number, or a string such as `"1048576"`, `"991904B"`, `"512MiB"`, `"6GiB"`, `"1.5GB"`.
 *
 * @param value The byte count.
 * @returns The count in bytes (a whole number).
 * @throws {Error} If the value is not a non-negative count with a known unit.
 *
 * @example Units
 * ```ts
 * import { parseBytes } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * assert.equal(parseBytes("512MiB"), 512 * 1024 * 1024);
 * assert.equal(parseBytes("991904B"), 991904);
 * ```
 */
export function parseBytes(value: number | string): number {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) throw new Error(`Invalid byte count: ${value}`);
    return Math.floor(value);
  }
  const m = /^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = m ? UNITS[m[2].toUpperCase()] : undefined;
  if (!m || unit === undefined) {
    throw new Error(
      `Invalid byte count "${value}": expected a number with an optional unit (B, KiB, MiB, GiB, KB, MB, GB)`,
    );
  }
  return Math.floor(Number(m[1]) * unit);
}

/**
 * Formats a byte count for people: `formatBytes(3 * 2 ** 20) === "3.00 MiB"`.
 *
 * @param bytes The count.
 * @returns A short string with a binary unit.
 *
 * @example
 * ```ts
 * import { formatBytes } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * assert.equal(formatBytes(1536), "1.50 KiB");
 * ```
 */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return String(bytes);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(2)} ${units[i]}`;
}
