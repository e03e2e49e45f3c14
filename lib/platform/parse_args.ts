/**
 * Strict command-line parsing with `node:util` `parseArgs`'s rules and messages (`--name value`, `--name=value`,
 * `--switch`, `-h`; no positionals), for the flag tables, which run in browsers too.
 *
 * @module
 */

/** One option: a switch or one taking a value, with an optional one-letter alias. */
export interface ArgOption {
  /** `string`: takes a value; `boolean`: a switch. */
  readonly type: "string" | "boolean";
  /** A one-letter alias (`-h`). */
  readonly short?: string;
}

/**
 * The values given, by option name (the last one wins for a repeated option).
 *
 * @param args The arguments.
 * @param options The options by name.
 * @returns The values given.
 * @throws {Error} For an unknown option, a positional argument, a missing value or a value given to a switch,
 *   with `parseArgs`'s message.
 *
 * @example
 * ```ts
 * import { parseStrictArgs } from "@qlora/webgpu/platform";
 * import assert from "node:assert/strict";
 * const options = { lr: { type: "string" }, f16: { type: "boolean" } } as const;
 * assert.deepEqual(parseStrictArgs(["--lr=2e-4", "--f16"], options), { lr: "2e-4", f16: true });
 * assert.throws(() => parseStrictArgs(["x"], options), /Unexpected argument 'x'/);
 * ```
 */
export function parseStrictArgs(
  args: readonly string[],
  options: Readonly<Record<string, ArgOption>>,
): Record<string, string | boolean | undefined> {
  const values: Record<string, string | boolean | undefined> = {};
  const byShort = new Map(Object.entries(options).filter(([, o]) => o.short).map(([k, o]) => [o.short!, k]));
  const positional = (a: string) =>
    new Error(`Unexpected argument '${a}'. This command does not take positional arguments`);
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      if (i + 1 < args.length) throw positional(args[i + 1]);
      break;
    }
    if (!a.startsWith("-") || a === "-") throw positional(a);
    let names: string[];
    let inline: string | undefined;
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      names = [eq < 0 ? a.slice(2) : a.slice(2, eq)];
      inline = eq < 0 ? undefined : a.slice(eq + 1);
    } else {
      names = [...a.slice(1)].map((c) => byShort.get(c) ?? `-${c}`);
    }
    for (const name of names) {
      const spelled = name.startsWith("-") ? name : a.startsWith("--") ? `--${name}` : `-${options[name]?.short}`;
      const o = Object.hasOwn(options, name) ? options[name] : undefined;
      if (!o) throw new Error(`Unknown option '${spelled}'`);
      if (o.type === "boolean") {
        if (inline !== undefined) throw new Error(`Option '${spelled}' does not take an argument`);
        values[name] = true;
        continue;
      }
      if (inline !== undefined) values[name] = inline;
      else if (i + 1 >= args.length) throw new Error(`Option '${spelled} <value>' argument missing`);
      else if (args[i + 1].startsWith("-")) {
        throw new Error(
          `Option '${spelled}' argument is ambiguous.\nDid you forget to specify the option argument for ` +
            `'${spelled}'?\nTo specify an option argument starting with a dash use '${spelled}=-XYZ'.`,
        );
      } else values[name] = args[++i];
    }
  }
  return values;
}
