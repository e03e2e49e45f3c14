/**
 * `deno task quantize --model IN --out OUT [options]` (see `--help`)
 *
 * Quantizes the decoder linear weights of a safetensors checkpoint folder to NF4 in the Hugging Face
 * bitsandbytes format (loadable with transformers' `from_pretrained`), copying everything else. The work is
 * {@linkcode quantizeFolder}; this file parses arguments and prints progress on stderr.
 *
 * @module
 */

import { formatBytes, parseFlags, quantizeFolder, requestGpu } from "../mod.ts";
import { QUANTIZE_FLAGS, QUANTIZE_HELP } from "./_quantize_options.ts";

function fail(message: string, code: number): never {
  console.error(`error: ${message}`);
  if (code === 2) console.error("Run with --help for usage.");
  Deno.exit(code);
}

let args;
try {
  args = parseFlags(QUANTIZE_FLAGS, Deno.args);
} catch (e) {
  fail((e as Error).message, 2);
}
if (args === null) {
  console.log(QUANTIZE_HELP);
  Deno.exit(0);
}
const blocksize = args.blockSize;

try {
  const gpu = await requestGpu({ gpuMemory: args.gpuMemory ?? undefined });
  console.error(`Quantizing ${args.model} -> ${args.out} on ${gpu.adapterName} (NF4, block ${blocksize})`);
  const report = await quantizeFolder(gpu, {
    input: args.model,
    output: args.out,
    blocksize,
    doubleQuant: args.doubleQuant,
    modules: args.modules,
    onProgress: (p) => {
      const mbps = p.bytesRead / 1e6 / Math.max(p.seconds, 1e-9);
      const i = String(p.index).padStart(String(p.total).length);
      console.error(`[${i}/${p.total}] ${p.quantized ? "nf4 " : "copy"} ${p.name} (${mbps.toFixed(1)} MB/s)`);
    },
  });
  console.error(
    `Done: ${report.quantized.length} weights quantized, ${report.copied.length} tensors and ` +
      `${report.files.length} files copied; tensors ${formatBytes(report.inputBytes)} -> ` +
      `${formatBytes(report.outputBytes)} in ${report.seconds.toFixed(1)} s`,
  );
} catch (e) {
  fail((e as Error).message, 1);
}
