// Stage-1 demo (`deno task demo`): why QLoRA stores weights in NF4. Generates normally distributed weights of
// Llama-like projection shapes (scaled down so llvmpipe finishes in seconds; --full for Llama-7B's), quantizes
// each on the GPU with NF4 (double quantization, bitsandbytes' default), NF4 without it, FP4 and a symmetric
// INT4, dequantizes, and prints the reconstruction error and the storage cost of each.
//
//   deno task demo [--full] [--blocksize 64]

import { parseArgs } from "node:util";
import { bitsPerParameter, quantizationErrors, requestGpu, Rng, Tensor } from "../mod.ts";

const { values } = parseArgs({
  options: { full: { type: "boolean", default: false }, blocksize: { type: "string", default: "64" } },
});
const blocksize = Number(values.blocksize);
const d = values.full ? 1 : 8;
const shapes: [string, number, number][] = [
  ["q_proj", 4096 / d, 4096 / d],
  ["gate_proj", 11008 / d, 4096 / d],
  ["down_proj", 4096 / d, 11008 / d],
];

const t0 = performance.now();
const gpu = await requestGpu();
console.log(`Adapter: ${gpu.adapterName}`);
console.log(
  `Weights ~ N(0, 0.02²) (as Llama's initialisation), shapes of a Llama-7B layer${values.full ? "" : " / 8"}; ` +
    `blocks of ${blocksize}. Each tensor is quantized and dequantized on the GPU; the error is ` +
    "‖deq(q(W)) − W‖ / ‖W‖.\n",
);
console.log("| tensor | scheme | rel. L2 error | mean abs error | bits/param |");
console.log("|---|---|---|---|---|");
const rng = new Rng(2023);
for (const [name, rows, cols] of shapes) {
  const w = Tensor.fromArray(gpu, rng.normalArray(rows * cols, 0, 0.02), [rows, cols], { label: name });
  for (const r of await quantizationErrors(gpu, w, { blocksize })) {
    const scheme = `${r.quantType.toUpperCase()}${r.doubleQuant ? " + double quant" : ""}`;
    console.log(
      `| ${name} [${rows}×${cols}] | ${scheme} | ${r.relError.toFixed(4)} | ${r.meanAbsError.toExponential(3)} | ` +
        `${r.bitsPerParameter.toFixed(3)} |`,
    );
  }
  w.destroy();
}
console.log(
  "\nNF4's levels are quantiles of a normal distribution, so normally distributed weights use all 16 levels " +
    "evenly: the lowest error of the three 4-bit types. Double quantization stores each block's absmax in 8 bits " +
    `(${bitsPerParameter(blocksize, true).toFixed(3)} instead of ${bitsPerParameter(blocksize, false).toFixed(3)} ` +
    "bits per parameter) for almost no extra error.",
);
console.log(`Done in ${((performance.now() - t0) / 1000).toFixed(1)} s.`);
gpu.destroy();
