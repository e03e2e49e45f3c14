/**
 * `deno task inspect-data --model DIR --data FILE [--max-seq-len N] [--show N] [--json OUT]`: shows what the trainer
 * would train on, without a GPU (see `--help`).
 *
 * @module
 */

import { _parseFlags } from "../lib/_flags.ts";
import { _exists } from "../lib/io/_file.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { loadLlamaConfig } from "../lib/model/config.ts";
import { readJsonl } from "../lib/data/records.ts";
import { examplesJsonl, inspectData, inspectionSummary, showExample } from "../lib/data/inspect.ts";

const HELP = `Shows what the trainer would train on: the data tokenized by the trainer's own code, the first examples
with their trained tokens highlighted, and the counts. No GPU is used.

Usage: deno task inspect-data --model DIR --data FILE [options]

  --model DIR          model folder (tokenizer.json, tokenizer_config.json, config.json)
  --data FILE          JSON Lines data: {"text"}, {"prompt", "completion"} or {"messages"} per line
  --max-seq-len N      truncate longer examples, as the trainer does (default: the model's context length)
  --show N             examples to show (default 3)
  --json OUT           write one {"input_ids": [...], "labels": [...]} line per example (labels -100: not trained)
  -h, --help           this help

Trained tokens are shown in reverse green on a terminal, between [[ and ]] otherwise.`;

try {
  const flags = _parseFlags(Deno.args, {
    model: "string",
    data: "string",
    "max-seq-len": "string",
    show: "string",
    json: "string",
  });
  if (flags.help) {
    console.log(HELP);
    Deno.exit(0);
  }
  const model = flags.required("model");
  const dataFile = flags.required("data");
  const show = flags.int("show", 3, 0);
  const configLimit = await _exists(`${model}/config.json`)
    ? (await loadLlamaConfig(model)).maxPositionEmbeddings
    : Infinity;
  const maxSeqLen = flags.int("max-seq-len", configLimit, 2);
  const tok = await loadTokenizer(model);
  const ins = inspectData(tok, await readJsonl(dataFile), maxSeqLen);
  const color = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
  for (const ex of ins.data.examples.slice(0, show)) {
    console.log(`--- ${dataFile}:${ex.line}: ${ex.inputIds.length} tokens, ${ex.targets} trained`);
    console.log(showExample(tok, ex, color));
  }
  console.log(`--- ${dataFile}\n${inspectionSummary(ins)}`);
  const out = flags.str("json");
  if (out !== undefined) {
    await Deno.writeTextFile(out, examplesJsonl(ins.data.examples));
    console.log(`${ins.data.examples.length} examples written to ${out}`);
  }
} catch (e) {
  console.error(`Error: ${(e as Error).message}`);
  Deno.exit(1);
}
