/**
 * `deno task readme`: rewrites the flag lists of README.md from the CLIs' flag tables (each list sits between
 * `<!-- flags: CLI -->` and `<!-- /flags -->`), so that the README never drifts from `--help`.
 *
 * @module
 */

import { DEMO_FLAGS } from "./_reversal_demo.ts";
import { INSPECT_DATA_FLAGS } from "./_inspect_data_options.ts";
import { QUANTIZE_FLAGS } from "./_quantize_options.ts";
import { PLAN_FLAGS } from "./_plan_options.ts";
import { FINETUNE_FLAGS, flagHelp, GENERATE_FLAGS, MERGE_FLAGS } from "../mod.ts";
import type { Flag } from "../lib/train/mod.ts";

/** Every CLI's flag table, by `deno task` name. */
export const CLI_FLAGS: Record<string, Record<string, Flag<unknown>>> = {
  demo: DEMO_FLAGS,
  quantize: QUANTIZE_FLAGS,
  finetune: FINETUNE_FLAGS,
  "inspect-data": INSPECT_DATA_FLAGS,
  generate: GENERATE_FLAGS,
  merge: MERGE_FLAGS,
  plan: PLAN_FLAGS,
};

const SECTION = /(<!-- flags: ([\w-]+) -->\n)[\s\S]*?(<!-- \/flags -->)/g;

/**
 * The README with every flag list regenerated from {@linkcode CLI_FLAGS}.
 *
 * @param readme The README's text.
 * @returns The text with each marked section replaced by its CLI's `--help` option lines.
 * @throws {Error} For a section naming an unknown CLI.
 *
 * @example
 * ```ts
 * import { readmeWithFlags } from "./readme_flags.ts";
 * import assert from "node:assert/strict";
 * const out = readmeWithFlags("<!-- flags: merge -->\nold\n<!-- /flags -->");
 * assert.match(out, /--dtype D +stored dtype of the merged weights: bf16 \| f32 \(bf16\)/);
 * ```
 */
export function readmeWithFlags(readme: string): string {
  return readme.replace(SECTION, (_, open: string, cli: string, close: string) => {
    const table = CLI_FLAGS[cli];
    if (!table) throw new Error(`README.md: flag section for unknown CLI "${cli}" (${Object.keys(CLI_FLAGS)})`);
    // Without --help's indent, which the formatter strips from code blocks.
    return `${open}\n\`\`\`text\n${flagHelp(table).replace(/^ {2}/gm, "")}\`\`\`\n\n${close}`;
  });
}

if (import.meta.main) {
  const path = new URL("../README.md", import.meta.url);
  await Deno.writeTextFile(path, readmeWithFlags(await Deno.readTextFile(path)));
}
