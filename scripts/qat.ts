/**
 * `deno task qat --model DIR --data gen.jsonl --out DIR --bits w4a8kv4 [options]`: LLM-QAT (see `--help`).
 *
 * @module
 */

import { parseQatArgs, QAT_HELP } from "../lib/qat/options.ts";
import { resolveQatRun, trainQat } from "../lib/qat/train.ts";
import { requestGpu } from "../lib/gpu/device.ts";

try {
  const parsed = parseQatArgs(Deno.args);
  if (parsed.kind === "help") {
    console.log(QAT_HELP);
    Deno.exit(0);
  }
  const run = await resolveQatRun(parsed);
  const gpu = await requestGpu({ gpuMemory: run.options.gpuMemory ?? undefined });
  const result = await trainQat(gpu, run);
  console.error(`Model: ${run.options.out}/model (${run.options.bits}); last KD loss ${result.lastLoss.toFixed(4)}`);
} catch (e) {
  console.error(`Error: ${(e as Error).message}`);
  Deno.exit(1);
}
