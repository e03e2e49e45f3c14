/**
 * Command-line flag parsing shared by the `finetune`, `generate` and `merge` CLIs: `node:util`'s `parseArgs` (strict, no
 * positionals) and typed accessors whose errors name the flag and say what was expected.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseBytes } from "./bytes.ts";

/** Parsed flags with typed accessors. */
export interface _Flags {
  /** `--help` or `-h` was given. */
  help: boolean;
  /** The names of the flags given. */
  given: string[];
  /** A string flag, or undefined. */
  str(k: string): string | undefined;
  /** A required string flag. */
  required(k: string): string;
  /** A boolean flag. */
  bool(k: string): boolean;
  /** A number passing `check`, or `def`. */
  num(k: string, def: number, check: (x: number) => boolean, what: string): number;
  /** An integer ≥ `min`, or `def`. */
  int(k: string, def: number, min: number): number;
  /** A byte count (`512MiB`), or null. */
  bytes(k: string): number | null;
  /** One of `allowed`, or `def`. */
  oneOf<T extends string>(k: string, def: T, allowed: readonly T[]): T;
}

/**
 * Parses flags of the given kinds (plus `-h/--help`).
 *
 * @param args The arguments.
 * @param kinds Flag name → `string` or `boolean`.
 * @returns The accessors.
 * @throws {Error} For an unknown flag or a missing value, naming it.
 */
export function _parseFlags(args: readonly string[], kinds: Record<string, "string" | "boolean">): _Flags {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  for (const [k, type] of Object.entries(kinds)) options[k] = { type };
  options.help = { type: "boolean", short: "h" };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...args], strict: true, allowPositionals: false, options }));
  } catch (e) {
    throw new Error(`${(e as Error).message.replace(/\. To specify.*$/s, "")} (see --help)`);
  }
  const str = (k: string) => values[k] as string | undefined;
  const num = (k: string, def: number, check: (x: number) => boolean, what: string): number => {
    const v = str(k);
    if (v === undefined) return def;
    const x = Number(v);
    if (v.trim() === "" || !Number.isFinite(x) || !check(x)) throw new Error(`--${k} "${v}": expected ${what}`);
    return x;
  };
  return {
    help: values.help === true,
    given: Object.keys(values).filter((k) => values[k] !== undefined),
    str,
    required(k) {
      const v = str(k);
      if (v === undefined) throw new Error(`--${k} is required (see --help)`);
      return v;
    },
    bool: (k) => values[k] === true,
    num,
    int: (k, def, min) =>
      num(k, def, (x) => Number.isInteger(x) && x >= min, min === 0 ? "a whole number ≥ 0" : `an integer ≥ ${min}`),
    bytes(k) {
      const v = str(k);
      if (v === undefined) return null;
      try {
        return parseBytes(v);
      } catch (e) {
        throw new Error(`--${k}: ${(e as Error).message}`);
      }
    },
    oneOf<T extends string>(k: string, def: T, allowed: readonly T[]): T {
      const v = str(k);
      if (v === undefined) return def;
      if (!allowed.includes(v as T)) throw new Error(`--${k} "${v}": expected one of ${allowed.join(", ")}`);
      return v as T;
    },
  };
}
