/**
 * `deno task inspect-data --model DIR --data FILE [--max-seq-len N] [--show N] [--json OUT]`: shows what the trainer
 * would train on, without a GPU (see `--help`).
 *
 * @module
 */

import { parseFlags } from "../lib/flags.ts";
import { INSPECT_DATA_FLAGS, INSPECT_DATA_HELP } from "./_inspect_data_options.ts";
import { _exists } from "../lib/io/_file.ts";
import { writeFileAtomic } from "../lib/io/atomic_write.ts";
import { loadTokenizer } from "../lib/io/tokenizer.ts";
import { loadLlamaConfig } from "../lib/model/config.ts";
import { readJsonl } from "../lib/data/records.ts";
import { examplesJsonl, inspectData, inspectionSummary, showExample } from "../lib/data/inspect.ts";

try {
  const opts = parseFlags(INSPECT_DATA_FLAGS, Deno.args);
  if (!opts) {
    console.log(INSPECT_DATA_HELP);
    Deno.exit(0);
  }
  const { model, data: dataFile, show } = opts;
  const maxSeqLen = opts.maxSeqLen ??
    (await _exists(`${model}/config.json`) ? (await loadLlamaConfig(model)).maxPositionEmbeddings : Infinity);
  const tok = await loadTokenizer(model);
  const ins = inspectData(tok, await readJsonl(dataFile), maxSeqLen);
  const color = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
  for (const ex of ins.data.examples.slice(0, show)) {
    console.log(`--- ${dataFile}:${ex.line}: ${ex.inputIds.length} tokens, ${ex.targets} trained`);
    console.log(showExample(tok, ex, color));
  }
  console.log(`--- ${dataFile}\n${inspectionSummary(ins)}`);
  const out = opts.json;
  if (out !== null) {
    await writeFileAtomic(out, examplesJsonl(ins.data.examples));
    console.log(`${ins.data.examples.length} examples written to ${out}`);
  }
} catch (e) {
  console.error(`Error: ${(e as Error).message}`);
  Deno.exit(1);
}
