// `deno task demo`: QLoRA end to end on any WebGPU adapter, with nothing to download, in a few minutes.
//   1. Why NF4: quantization error of NF4 (with and without double quantization), FP4 and INT4 on normally
//      distributed weights (Llama-7B layer shapes / 8; --full for the real ones).
//   2. QLoRA: a tiny seeded Llama checkpoint learns to reverse three letters ("abc=" → "cba") with LoRA adapters
//      on its NF4 weights; greedy generations and held-out exact-match accuracy before and after.
//
//   deno task demo [options]   (see --help)

import { join } from "node:path";
import { flagHelp, parseFlags, quantizationErrors, requestGpu, Rng, Tensor } from "../mod.ts";
import { bitsPerParameter } from "../lib/quant/mod.ts";
import { DEMO_FLAGS, runReversalDemo } from "./_reversal_demo.ts";

let parsed;
try {
  parsed = parseFlags(DEMO_FLAGS, Deno.args);
} catch (e) {
  console.error(`Error: ${(e as Error).message}`);
  Deno.exit(1);
}
if (parsed === null) {
  console.log(`Usage: deno task demo [options]\n\nOptions:\n${flagHelp(DEMO_FLAGS)}`);
  Deno.exit(0);
}
const values = parsed;
const blocksize = values.blocksize;
const t0 = performance.now();
const gpu = await requestGpu();
const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;
console.log(`Adapter: ${gpu.adapterName}\n`);

// 1. NF4 versus the other 4-bit types.
const d = values.full ? 1 : 8;
const shapes: [string, number, number][] = [["q_proj", 4096 / d, 4096 / d], ["down_proj", 4096 / d, 11008 / d]];
console.log(
  `## 1. Why NF4\nWeights ~ N(0, 0.02²) (Llama's initialisation), Llama-7B layer shapes${values.full ? "" : " / 8"}, ` +
    `blocks of ${blocksize}, quantized and dequantized on the GPU; error ‖deq(q(W)) − W‖ / ‖W‖.\n`,
);
console.log("| tensor | scheme | rel. L2 error | bits/param |\n|---|---|---|---|");
const rng = new Rng(2023);
for (const [name, rows, cols] of shapes) {
  const w = Tensor.fromArray(gpu, rng.normalArray(rows * cols, 0, 0.02), [rows, cols], { label: name });
  for (const r of await quantizationErrors(gpu, w, { blocksize })) {
    const scheme = `${r.quantType.toUpperCase()}${r.doubleQuant ? " + double quant" : ""}`;
    console.log(
      `| ${name} [${rows}×${cols}] | ${scheme} | ${r.relError.toFixed(4)} | ${r.bitsPerParameter.toFixed(3)} |`,
    );
  }
  w.destroy();
}
console.log(
  "\nNF4's levels are quantiles of a normal distribution: the lowest error of the 4-bit types. Double " +
    `quantization stores each block's absmax in 8 bits (${bitsPerParameter(blocksize, true).toFixed(3)} instead ` +
    `of ${bitsPerParameter(blocksize, false).toFixed(3)} bits per parameter) for almost no extra error.\n`,
);

// 2. QLoRA fine-tuning of the tiny model.
const out = values.out;
const show = 6;
console.log(
  "## 2. QLoRA fine-tuning\nA tiny seeded Llama (2 layers, hidden 64, byte tokenizer; linear weights NF4 on load, " +
    "frozen) learns to reverse three letters with LoRA adapters on every projection.",
);
const r = await runReversalDemo(gpu, {
  out,
  trainData: "data/reverse_train.jsonl",
  testData: "data/reverse_test.jsonl",
  steps: values.steps,
  evalCount: values.eval,
  onTrainStart: (args) => {
    console.log(`[${elapsed()}] Base model scored. Fine-tuning (demo settings; QLoRA's defaults are for real models):`);
    console.log(`  deno task finetune ${args.join(" ")}`);
  },
});
const pct = (x: number) => `${(100 * x).toFixed(0)}%`;
console.log(`[${elapsed()}] Trained in ${r.trainSeconds.toFixed(0)} s; last loss ${r.lastLoss.toFixed(3)}.\n`);
console.log("| prompt | expected | before | after |\n|---|---|---|---|");
for (let i = 0; i < Math.min(show, r.after.outputs.length); i++) {
  const b = r.before.outputs[i];
  const a = r.after.outputs[i];
  const q = (s: string) => JSON.stringify(s);
  console.log(`| ${q(a.prompt)} | ${q(a.expected)} | ${q(b.output)} | ${q(a.output)} ${a.correct ? "✓" : "✗"} |`);
}
console.log(
  `\nHeld-out exact match (${r.after.total} prompts, greedy): before ${pct(r.before.accuracy)} ` +
    `(${r.before.correct}/${r.before.total}), after ${pct(r.after.accuracy)} (${r.after.correct}/${r.after.total}).`,
);
console.log(`Adapter (PEFT format): ${r.adapterDir}\nLoss curve: ${r.lossSvgPath}\nModel: ${r.modelDir}\n`);
const merged = join(out, "merged");
console.log(
  "Try it:\n" +
    `  deno task generate --model ${r.modelDir} --adapter ${r.adapterDir} --prompt "xyz="\n` +
    `  deno task merge --model ${r.modelDir} --adapter ${r.adapterDir} --out ${merged}\n` +
    `  deno task generate --model ${merged} --prompt "xyz="\n\n` +
    "On a real Hugging Face model folder (e.g. a downloaded SmolLM2-135M or TinyLlama-1.1B), QLoRA's defaults:\n" +
    "  deno task finetune --model path/to/SmolLM2-135M --data data/reverse_train.jsonl --out out/smollm2-reverse " +
    "--steps 200\n" +
    '  deno task generate --model path/to/SmolLM2-135M --adapter out/smollm2-reverse --prompt "abc="\n' +
    "  deno task merge --model path/to/SmolLM2-135M --adapter out/smollm2-reverse --out out/smollm2-reverse-merged",
);
console.log(`\nDone in ${elapsed()}.`);
gpu.destroy();
