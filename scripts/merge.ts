/**
 * `deno task merge --model DIR --adapter DIR --out DIR [--dtype bf16|f32] [--quantize]`: writes the base model
 * with the LoRA adapter merged in (see `--help`).
 *
 * @module
 */

import { MERGE_HELP, parseMergeArgs } from "../lib/merge/options.ts";
import { mergeAdapterFolder } from "../lib/merge/merge_folder.ts";
import { requestGpu } from "../lib/gpu/device.ts";

try {
  const o = parseMergeArgs(Deno.args);
  if (o === null) {
    console.log(MERGE_HELP);
    Deno.exit(0);
  }
  const gpu = await requestGpu();
  const encoder = new TextEncoder();
  const tty = Deno.stderr.isTerminal();
  const report = await mergeAdapterFolder(gpu, {
    ...o,
    onProgress: (p) => {
      const line = `[${p.index}/${p.total}] ${p.action} ${p.name}`;
      Deno.stderr.writeSync(encoder.encode(tty ? `\r${line.padEnd(100)}` : `${line}\n`));
    },
  });
  console.error(
    `${
      tty ? "\n" : ""
    }Merged ${report.merged.length} weights, ${report.dequantized.length} projections without an adapter ` +
      `module, ${report.other.length} other tensors, ${report.files.length} other files, in ` +
      `${report.seconds.toFixed(1)} s: ${o.out} (${o.quantize ? "NF4, bitsandbytes 4-bit" : o.dtype})`,
  );
} catch (e) {
  console.error(`\nError: ${(e as Error).message}`);
  Deno.exit(1);
}
