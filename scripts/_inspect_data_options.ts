/**
 * The flags of `deno task inspect-data`: one table, from which the parser, the defaults, `--help` and the README's
 * list come.
 *
 * @module
 */

import { flagHelp, type FlagTable, intFlag, textFlag } from "../lib/flags.ts";

/** Options of a `deno task inspect-data` run. */
export interface InspectDataCliOptions {
  /** Model folder (tokenizer files; config.json for the context length). */
  model: string;
  /** JSON Lines data file. */
  data: string;
  /** Longest example in tokens, or null for the model's context length. */
  maxSeqLen: number | null;
  /** Examples to show. */
  show: number;
  /** File for one `{"input_ids", "labels"}` line per example, or null. */
  json: string | null;
}

/** The flags of `deno task inspect-data`, checked by the compiler against {@linkcode InspectDataCliOptions}. */
export const INSPECT_DATA_FLAGS: FlagTable<InspectDataCliOptions> = {
  model: textFlag("DIR", "model folder (tokenizer.json, tokenizer_config.json, config.json)", { required: true }),
  data: textFlag("FILE", 'JSON Lines: {"text"}, {"prompt", "completion"} or {"messages"} per line', {
    required: true,
  }),
  maxSeqLen: intFlag("N", "truncate longer examples, as the trainer does", {
    min: 2,
    default: null,
    unset: "the model's context length",
  }),
  show: intFlag("N", "examples to show", { min: 0, default: 3 }),
  json: textFlag("OUT", 'write one {"input_ids": [...], "labels": [...]} line per example (labels -100: not trained)'),
};

/** The `--help` text of `deno task inspect-data`. */
export const INSPECT_DATA_HELP: string =
  `Shows what the trainer would train on: the data tokenized by the trainer's own code, the first examples
with their trained tokens highlighted, and the counts. No GPU is used.

Usage: deno task inspect-data --model DIR --data FILE [options]

Options:
${flagHelp(INSPECT_DATA_FLAGS)}

Trained tokens are shown in reverse green on a terminal, between [[ and ]] otherwise.`;
