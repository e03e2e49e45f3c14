/**
 * `deno task finetune --model DIR --data FILE.jsonl --out DIR [options]`: QLoRA fine-tuning (see `--help`).
 *
 * @module
 */

import { FINETUNE_HELP, parseFinetuneArgs } from "../lib/train/options.ts";
import { finetune, resolveFinetuneRun } from "../lib/train/trainer.ts";
import { requestGpu } from "../lib/gpu/device.ts";
import { formatBytes } from "../lib/bytes.ts";

try {
  const parsed = parseFinetuneArgs(Deno.args);
  if (parsed.kind === "help") {
    console.log(FINETUNE_HELP);
    Deno.exit(0);
  }
  const run = await resolveFinetuneRun(parsed);
  const gpu = await requestGpu({ gpuMemory: run.options.gpuMemory ?? undefined });
  const limit = gpu.budget.limit;
  console.error(
    `GPU: ${gpu.adapterName}; budget ${Number.isFinite(limit) ? formatBytes(limit) : "the device's limits"}`,
  );
  const result = await finetune(gpu, run);
  console.error(`Adapter: ${run.options.out}/adapter_model.safetensors (+ adapter_config.json)`);
  console.error(`Metrics: ${result.metricsPath}; loss curve: ${result.lossSvgPath}`);
} catch (e) {
  console.error(`Error: ${(e as Error).message}`);
  Deno.exit(1);
}
