/**
 * Declarative command-line flags: each CLI has one table (option name → {@linkcode Flag}: kind, default, one-line
 * help, validation) from which its parser, its defaults, its `--help` lines and the README's flag lists all come.
 * Flag names are the option names in kebab case (`loraR` → `--lora-r`; a negated switch `shuffle` → `--no-shuffle`).
 * Numbers are strict: decimal notation only (`2e-4` yes; `0x10`, `Infinity`, `""` no), and errors name the flag.
 *
 * @module
 */

import { parseStrictArgs } from "./platform/parse_args.ts";
import { parseBytes } from "./bytes.ts";

/** One flag: how it is spelled in `--help`, and how its value is read. */
export interface Flag<T> {
  /** `string`: takes a value; `boolean`: a switch. */
  readonly type: "string" | "boolean";
  /** Placeholder of the value in `--help` (`N`, `DIR`); empty for a switch. */
  readonly arg: string;
  /** One line of `--help`, without the default. */
  readonly help: string;
  /** The default as `--help` shows it in parentheses, or null to show none (required flags, switches). */
  readonly shown: string | null;
  /** A switch spelled `--no-NAME` that sets its option to false. */
  readonly negated?: boolean;
  /** A path (saved absolute where a run's flags are saved). */
  readonly path?: boolean;
  /** The option's value from the raw argument (undefined: not given); throws naming `--flag`. */
  value(raw: string | boolean | undefined, flag: string): T;
}

/** A CLI's flag table: one {@linkcode Flag} per option of `O`, of that option's type. */
export type FlagTable<O> = { readonly [K in keyof O]: Flag<O[K]> };

/** Flags as the strict parser returned them, by flag name. */
export interface RawFlags {
  /** `--help` or `-h` was given. */
  help: boolean;
  /** Names of the flags given, in table order. */
  given: string[];
  /** Raw values by flag name. */
  values: Record<string, string | boolean | undefined>;
}

/**
 * The flag name of option `key` (`loraR` → `lora-r`; a negated switch `shuffle` → `no-shuffle`).
 *
 * @param key The option name.
 * @param flag Its flag.
 * @returns The name after `--`.
 *
 * @example
 * ```ts
 * import { flagName, switchFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * assert.equal(flagName("maxNewTokens", switchFlag("x")), "max-new-tokens");
 * assert.equal(flagName("shuffle", switchFlag("x", { negated: true })), "no-shuffle");
 * ```
 */
export function flagName(key: string, flag: Flag<unknown>): string {
  return (flag.negated ? "no-" : "") + key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * A flag taking text: required (an error naming it when missing), with a default, or else null when not given.
 *
 * @param arg Placeholder in `--help`.
 * @param help One line of `--help`.
 * @param opts `required` (true, or what the flag names, for the error), `default`, `path`.
 * @returns The flag.
 *
 * @example
 * ```ts
 * import { textFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * assert.equal(textFlag("DIR", "output", { default: "out" }).value(undefined, "out"), "out");
 * assert.equal(textFlag("DIR", "adapter").value(undefined, "adapter"), null);
 * assert.throws(() => textFlag("DIR", "model", { required: true }).value(undefined, "model"), /--model is required/);
 * ```
 */
export function textFlag(arg: string, help: string, opts: { required: true | string; path?: boolean }): Flag<string>;
/** A text flag with a default. */
export function textFlag(arg: string, help: string, opts: { default: string; path?: boolean }): Flag<string>;
/** A text flag that is null when not given. */
export function textFlag(arg: string, help: string, opts?: { path?: boolean }): Flag<string | null>;
export function textFlag(
  arg: string,
  help: string,
  opts: { required?: true | string; default?: string; path?: boolean } = {},
): Flag<string | null> {
  const { required, path } = opts;
  return {
    type: "string",
    arg,
    help,
    shown: opts.default ?? null,
    path,
    value(raw, flag) {
      if (raw !== undefined) return String(raw);
      if (required === true) throw new Error(`--${flag} is required (see --help)`);
      if (required !== undefined) throw new Error(`--${flag} ${arg} is required (${required})`);
      return opts.default ?? null;
    },
  };
}

/**
 * A switch: true when given (a negated one, spelled `--no-NAME`: false when given).
 *
 * @param help One line of `--help`.
 * @param opts `negated`.
 * @returns The flag.
 *
 * @example
 * ```ts
 * import { switchFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * assert.equal(switchFlag("f16 products").value(true, "f16"), true);
 * assert.equal(switchFlag("file order", { negated: true }).value(undefined, "no-shuffle"), true);
 * ```
 */
export function switchFlag(help: string, opts: { negated?: boolean } = {}): Flag<boolean> {
  const negated = opts.negated === true;
  return { type: "boolean", arg: "", help, shown: null, negated, value: (raw) => (raw === true) !== negated };
}

/** A strict decimal number: optional sign, digits with an optional fraction, optional exponent. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * A number flag: decimal only, passing `check` (described by `what` in the error).
 *
 * @param arg Placeholder in `--help`.
 * @param help One line of `--help`.
 * @param opts `default`, `check`, `what`.
 * @returns The flag.
 *
 * @example
 * ```ts
 * import { numberFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const lr = numberFlag("X", "learning rate", { default: 2e-4, check: (x) => x >= 0, what: "a number ≥ 0" });
 * assert.equal(lr.value("1e-3", "lr"), 1e-3);
 * assert.equal(lr.value(undefined, "lr"), 2e-4);
 * assert.throws(() => lr.value("0x10", "lr"), /--lr "0x10": expected a number ≥ 0/);
 * ```
 */
export function numberFlag(
  arg: string,
  help: string,
  opts: { default: number; check: (x: number) => boolean; what: string },
): Flag<number> {
  return { type: "string", arg, help, shown: String(opts.default), value: (raw, flag) => num(raw, flag, opts) };
}

/**
 * An integer flag ≥ `min` (and passing `check`, described by `what`), decimal only; with `default` null it is
 * null when not given, and `unset` says in `--help` what that means.
 *
 * @param arg Placeholder in `--help`.
 * @param help One line of `--help`.
 * @param opts `min`, `default`, `unset`, and optionally `check` and `what`.
 * @returns The flag.
 *
 * @example
 * ```ts
 * import { intFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const r = intFlag("N", "LoRA rank", { min: 1, default: 64 });
 * assert.equal(r.value("8", "lora-r"), 8);
 * assert.throws(() => r.value("2.5", "lora-r"), /--lora-r "2.5": expected an integer ≥ 1/);
 * const steps = intFlag("N", "optimizer steps", { min: 1, default: null, unset: "--epochs passes" });
 * assert.equal(steps.value(undefined, "steps"), null);
 * ```
 */
export function intFlag(
  arg: string,
  help: string,
  opts: { min: number; default: number; check?: (x: number) => boolean; what?: string },
): Flag<number>;
/** An integer flag that is null when not given. */
export function intFlag(
  arg: string,
  help: string,
  opts: { min: number; default: null; unset: string; check?: (x: number) => boolean; what?: string },
): Flag<number | null>;
export function intFlag(
  arg: string,
  help: string,
  opts: { min: number; default: number | null; unset?: string; check?: (x: number) => boolean; what?: string },
): Flag<number | null> {
  const { min, check = () => true } = opts;
  const what = opts.what ?? (min === 0 ? "a whole number ≥ 0" : `an integer ≥ ${min}`);
  return {
    type: "string",
    arg,
    help,
    shown: opts.default === null ? opts.unset! : String(opts.default),
    value: (raw, flag) =>
      raw === undefined && opts.default === null
        ? null
        : num(raw, flag, { default: opts.default!, check: (x) => Number.isInteger(x) && x >= min && check(x), what }),
  };
}

function num(
  raw: string | boolean | undefined,
  flag: string,
  opts: { default: number; check: (x: number) => boolean; what: string },
): number {
  if (raw === undefined) return opts.default;
  const v = String(raw);
  const x = Number(v);
  if (!DECIMAL.test(v) || !Number.isFinite(x) || !opts.check(x)) {
    throw new Error(`--${flag} "${v}": expected ${opts.what}`);
  }
  return x;
}

/**
 * A byte-count flag (`1048576`, `991904B`, `512MiB`, `6GiB`), null when not given (`unset` says what that means).
 *
 * @param arg Placeholder in `--help`.
 * @param help One line of `--help`.
 * @param unset What not giving it means, for `--help`.
 * @returns The flag.
 *
 * @example
 * ```ts
 * import { bytesFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const f = bytesFlag("BYTES", "GPU memory cap", "adapter limit");
 * assert.equal(f.value("512MiB", "gpu-memory"), 512 * 2 ** 20);
 * assert.throws(() => f.value("6 potatoes", "gpu-memory"), /--gpu-memory: Invalid byte count/);
 * ```
 */
export function bytesFlag(arg: string, help: string, unset: string): Flag<number | null> {
  return {
    type: "string",
    arg,
    help,
    shown: unset,
    value(raw, flag) {
      if (raw === undefined) return null;
      try {
        return parseBytes(String(raw));
      } catch (e) {
        throw new Error(`--${flag}: ${(e as Error).message}`);
      }
    },
  };
}

/**
 * A flag taking one of `choices` (listed in `--help` after `help`).
 *
 * @param arg Placeholder in `--help`.
 * @param help One line of `--help`.
 * @param choices The allowed values.
 * @param def The default.
 * @returns The flag.
 *
 * @example
 * ```ts
 * import { choiceFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const f = choiceFlag("D", "stored dtype", ["bf16", "f32"], "bf16");
 * assert.equal(f.value("f32", "dtype"), "f32");
 * assert.throws(() => f.value("f16", "dtype"), /--dtype "f16": expected one of bf16, f32/);
 * ```
 */
export function choiceFlag<const C extends readonly string[]>(
  arg: string,
  help: string,
  choices: C,
  def: C[number],
): Flag<C[number]> {
  return {
    type: "string",
    arg,
    help: `${help}: ${choices.join(" | ")}`,
    shown: def,
    value(raw, flag) {
      if (raw === undefined) return def;
      if (!choices.includes(String(raw))) throw new Error(`--${flag} "${raw}": expected one of ${choices.join(", ")}`);
      return raw as C[number];
    },
  };
}

/**
 * A flag taking a comma-separated list (blanks dropped; an empty list is an error), each item passing `check`.
 *
 * @param arg Placeholder in `--help`.
 * @param help One line of `--help`.
 * @param opts `default` (shown comma-separated), `all` (a value meaning the default, e.g. PEFT's `all-linear`),
 * `check` (throws naming the item; gets the flag name), `empty` (what an empty list lacks, for the error).
 * @returns The flag.
 *
 * @example
 * ```ts
 * import { listFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const f = listFlag("LIST", "modules", { default: ["q_proj"], empty: "at least one module name" });
 * assert.deepEqual(f.value("q_proj, v_proj", "modules"), ["q_proj", "v_proj"]);
 * assert.throws(() => f.value(",", "modules"), /--modules ",": expected at least one module name/);
 * ```
 */
export function listFlag<T extends string>(
  arg: string,
  help: string,
  opts: { default: readonly T[]; all?: string; check?: (item: string, flag: string) => void; empty: string },
): Flag<T[]> {
  const all = opts.default.join(",");
  return {
    type: "string",
    arg,
    help,
    shown: opts.all ? `${opts.all}: ${all}` : all,
    value(raw, flag) {
      if (raw === undefined || raw === opts.all) return [...opts.default];
      const items = String(raw).split(",").map((t) => t.trim()).filter((t) => t !== "");
      items.forEach((t) => opts.check?.(t, flag));
      if (items.length === 0) throw new Error(`--${flag} "${raw}": expected ${opts.empty}`);
      return items as T[];
    },
  };
}

/**
 * Reads `args` against a table (plus `-h/--help`) with a strict parser (`node:util` `parseArgs`'s rules), without validating values.
 *
 * @param table The CLI's flags.
 * @param args The arguments (`Deno.args`).
 * @returns Help, the flags given, their raw values.
 * @throws {Error} For an unknown flag, a positional argument or a missing value, naming it (and `--help`).
 *
 * @example
 * ```ts
 * import { readFlags, switchFlag, textFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const table = { out: textFlag("DIR", "output"), quantize: switchFlag("NF4") };
 * assert.deepEqual(readFlags(table, ["--quantize"]).given, ["quantize"]);
 * assert.throws(() => readFlags(table, ["--bogus"]), /Unknown option '--bogus'.*see --help/);
 * ```
 */
export function readFlags<O>(table: FlagTable<O>, args: readonly string[]): RawFlags {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  const names = Object.entries<Flag<unknown>>(table).map(([k, f]) => flagName(k, f));
  Object.values<Flag<unknown>>(table).forEach((f, i) => options[names[i]] = { type: f.type });
  options.help = { type: "boolean", short: "h" };
  try {
    const values = parseStrictArgs(args, options);
    return { help: values.help === true, given: names.filter((k) => values[k] !== undefined), values };
  } catch (e) {
    throw new Error(`${(e as Error).message} (see --help)`);
  }
}

/**
 * The flags given, as arguments again (e.g. to save a run's flags), with `--path` values passed through `path`.
 *
 * @param table The CLI's flags.
 * @param raw What {@linkcode readFlags} read.
 * @param path Maps the value of a path flag (e.g. to an absolute path).
 * @returns `--flag value` pairs and `--switch`es, in table order.
 *
 * @example
 * ```ts
 * import { givenArgs, readFlags, switchFlag, textFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const table = { model: textFlag("DIR", "model", { path: true }), f16: switchFlag("f16") };
 * const raw = readFlags(table, ["--f16", "--model", "m"]);
 * assert.deepEqual(givenArgs(table, raw, (p) => `/abs/${p}`), ["--model", "/abs/m", "--f16"]);
 * ```
 */
export function givenArgs<O>(table: FlagTable<O>, raw: RawFlags, path: (value: string) => string): string[] {
  return Object.entries<Flag<unknown>>(table).flatMap(([k, f]) => {
    const name = flagName(k, f);
    const v = raw.values[name];
    if (v === undefined) return [];
    return f.type === "boolean" ? [`--${name}`] : [`--${name}`, f.path ? path(String(v)) : String(v)];
  });
}

/**
 * Every option's value from raw flags, validated in table order (defaults for the flags not given).
 *
 * @param table The CLI's flags.
 * @param raw What {@linkcode readFlags} read.
 * @returns The options.
 * @throws {Error} For a missing required flag or a bad value, naming the flag.
 *
 * @example
 * ```ts
 * import { flagValues, intFlag, readFlags, switchFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const table = { maxNewTokens: intFlag("N", "most tokens", { min: 1, default: 128 }), chat: switchFlag("chat") };
 * assert.deepEqual(flagValues(table, readFlags(table, ["--chat"])), { maxNewTokens: 128, chat: true });
 * ```
 */
export function flagValues<O>(table: FlagTable<O>, raw: RawFlags): O {
  const out: Record<string, unknown> = {};
  for (const [k, f] of Object.entries<Flag<unknown>>(table)) {
    const name = flagName(k, f);
    out[k] = f.value(raw.values[name], name);
  }
  return out as O;
}

/**
 * Parses a CLI's arguments: null for `--help`, else every option (defaults filled in).
 *
 * @param table The CLI's flags.
 * @param args The arguments (`Deno.args`).
 * @returns The options, or null for `--help`.
 * @throws {Error} Naming the flag, for an unknown flag, a missing required one or a bad value.
 *
 * @example
 * ```ts
 * import { parseFlags } from "@qlora/webgpu";
 * import { textFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const table = { out: textFlag("DIR", "output", { default: "out/demo" }) };
 * assert.deepEqual(parseFlags(table, []), { out: "out/demo" });
 * assert.equal(parseFlags(table, ["-h"]), null);
 * ```
 */
export function parseFlags<O>(table: FlagTable<O>, args: readonly string[]): O | null {
  const raw = readFlags(table, args);
  return raw.help ? null : flagValues(table, raw);
}

/**
 * The defaults of every flag that is not required (what its option is when the flag is not given).
 *
 * @param table The CLI's flags.
 * @returns Option → default.
 *
 * @example
 * ```ts
 * import { flagDefaults, intFlag, textFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const table = { model: textFlag("DIR", "model", { required: true }), steps: intFlag("N", "steps", { min: 1, default: 300 }) };
 * assert.deepEqual(flagDefaults(table), { steps: 300 });
 * ```
 */
export function flagDefaults<O>(table: FlagTable<O>): Partial<O> {
  const out: Record<string, unknown> = {};
  for (const [k, f] of Object.entries<Flag<unknown>>(table)) {
    try {
      out[k] = f.value(undefined, flagName(k, f));
    } catch {
      // A required flag: no default.
    }
  }
  return out as Partial<O>;
}

/**
 * The option lines of a CLI's `--help` (and of its README flag list): flag, placeholder, help, default.
 *
 * @param table The CLI's flags.
 * @returns One line per flag, then `-h, --help`, each ending in a newline.
 *
 * @example
 * ```ts
 * import { flagHelp } from "@qlora/webgpu";
 * import { intFlag } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const help = flagHelp({ loraR: intFlag("N", "LoRA rank", { min: 1, default: 64 }) });
 * assert.match(help, /^ {2}--lora-r N {15}LoRA rank \(64\)\n/);
 * ```
 */
export function flagHelp<O>(table: FlagTable<O>): string {
  const line = (left: string, text: string) => `  ${left.padEnd(25)}${text}\n`;
  return Object.entries<Flag<unknown>>(table).map(([k, f]) =>
    line(`--${flagName(k, f)}${f.arg ? ` ${f.arg}` : ""}`, f.help + (f.shown === null ? "" : ` (${f.shown})`))
  ).join("") + line("-h, --help", "this text");
}
