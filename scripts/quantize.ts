/**
 * `deno task quantize --model IN --out OUT [--block-size N] [--no-double-quant] [--modules q_proj,...]`
 *
 * Quantizes the decoder linear weights of a safetensors checkpoint folder to NF4 in the Hugging Face
 * bitsandbytes format (loadable with transformers' `from_pretrained`), copying everything else. The work is
 * {@linkcode quantizeFolder}; this file parses arguments and prints progress on stderr.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { DEFAULT_QUANTIZED_MODULES, formatBytes, quantizeFolder, requestGpu } from "../mod.ts";

const USAGE = `Usage: deno task quantize --model IN --out OUT [options]

Quantizes the 2-D weights of the decoder's linear layers to NF4 (bitsandbytes 4-bit format) and copies every
other tensor and file. IN is a folder of .safetensors files (sharded or not; config.json optional).

Options:
  --model IN          input checkpoint folder (required)
  --out OUT           output folder (required; created)
  --block-size N      values per quantization block, a power of two >= 64 (default 64)
  --no-double-quant   keep absmax in float32 (default: double quantization)
  --modules a,b,...   module names to quantize (default ${DEFAULT_QUANTIZED_MODULES.join(",")})
  --gpu-memory SIZE   GPU memory budget, e.g. 6GiB (default: what the adapter allows)
  -h, --help          show this help
`;

function fail(message: string, code: number): never {
  console.error(`error: ${message}`);
  if (code === 2) console.error("Run with --help for usage.");
  Deno.exit(code);
}

let args;
try {
  args = parseArgs({
    args: Deno.args,
    strict: true,
    allowPositionals: false,
    options: {
      model: { type: "string" },
      out: { type: "string" },
      "block-size": { type: "string" },
      "no-double-quant": { type: "boolean" },
      modules: { type: "string" },
      "gpu-memory": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  }).values;
} catch (e) {
  fail((e as Error).message, 2);
}
if (args.help) {
  console.log(USAGE);
  Deno.exit(0);
}
if (!args.model) fail("--model IN is required (a folder of .safetensors files)", 2);
if (!args.out) fail("--out OUT is required (the output folder)", 2);
const blocksize = args["block-size"] === undefined ? 64 : Number(args["block-size"]);
if (!Number.isInteger(blocksize) || blocksize < 64 || (blocksize & (blocksize - 1)) !== 0) {
  fail(`--block-size ${args["block-size"]} is not a power of two >= 64`, 2);
}
const modules = args.modules?.split(",").map((m) => m.trim()).filter((m) => m.length > 0);
if (modules !== undefined && modules.length === 0) fail("--modules lists no module names", 2);

try {
  const gpu = await requestGpu({ gpuMemory: args["gpu-memory"] });
  console.error(`Quantizing ${args.model} -> ${args.out} on ${gpu.adapterName} (NF4, block ${blocksize})`);
  const report = await quantizeFolder(gpu, {
    input: args.model,
    output: args.out,
    blocksize,
    doubleQuant: !args["no-double-quant"],
    modules,
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
