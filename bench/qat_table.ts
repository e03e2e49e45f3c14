/**
 * The LLM-QAT table of `bench/RESULTS.md`: perplexity and mean KL to the full-precision teacher on held-out
 * generated data, for full precision, round-to-nearest PTQ and LLM-QAT at several bit settings, on the tiny model.
 * `deno run -A bench/qat_table.ts [OUT_DIR]` prints the markdown table.
 *
 * @module
 */

import { join } from "node:path";
import { LlamaModel, loadTokenizer, requestGpu } from "../mod.ts";
import { FULL_PRECISION, parseQatBits } from "../lib/qlinear/mod.ts";
import {
  evaluate,
  generateQatData,
  parseQatArgs,
  readGeneratedExamples,
  resolveQatRun,
  trainQat,
} from "../lib/qat/mod.ts";
import { writeTinyLlama } from "../lib/testing/mod.ts";

const dir = Deno.args[0] ?? await Deno.makeTempDir();
const gpu = await requestGpu();
const model = join(dir, "model");
await writeTinyLlama(model, { layers: 2 });
const fp = await LlamaModel.load(gpu, model, { lora: null, qat: { bits: FULL_PRECISION } });
const tok = await loadTokenizer(model);
await generateQatData(fp, tok, { out: join(dir, "train.jsonl"), samples: 64, maxLen: 32, batchSize: 16 });
await generateQatData(fp, tok, { out: join(dir, "heldout.jsonl"), samples: 16, maxLen: 32, batchSize: 16, seed: 1 });
const heldout = await readGeneratedExamples(join(dir, "heldout.jsonl"), 32);
const row = async (label: string, dirOf: string, bits: string) => {
  const m = await LlamaModel.load(gpu, dirOf, { lora: null, qat: { bits: parseQatBits(bits) } });
  const r = await evaluate(m, heldout, fp);
  m.destroy();
  return `| ${label} | ${bits.toUpperCase()} | ${r.perplexity.toFixed(3)} | ${r.kl!.toExponential(3)} |`;
};
const lines = ["| Method | #Bits | Perplexity | KL to teacher |", "|---|---|---|---|"];
lines.push(await row("Full precision", model, "w16a16kv16"));
for (const bits of ["w4a8kv4", "w4a8kv8", "w4a16kv16", "w8a8kv8"]) {
  lines.push(await row("RTN (PTQ)", model, bits));
  const out = join(dir, `qat-${bits}`);
  const parsed = parseQatArgs([
    ...["--model", model, "--data", join(dir, "train.jsonl"), "--out", out, "--bits", bits],
    ...["--steps", "32", "--batch-size", "4", "--lr", "2e-5", "--save-every", "0"],
  ]);
  if (parsed.kind !== "run") throw new Error("bad flags");
  await trainQat(gpu, await resolveQatRun(parsed), { sink: { writeSync: (b) => b.length, isTerminal: () => false } });
  lines.push(await row("LLM-QAT", join(out, "model"), bits));
}
console.log(lines.join("\n"));
fp.destroy();
