// Whole-model training throughput: forward + backward (LoRA r = 16 on all seven projections) of the tiny test model
// and of a 1-layer SmolLM2-135M-shaped block (hidden 576, 9 heads / 3 KV heads, intermediate 1536), with gradient
// checkpointing on and off, in tokens/s and as a ratio of model GFLOP/s to the dense f32 matmul's GFLOP/s
// measured in the same run. Also prints the peak GPU bytes of a step (all classes, and activations alone).
//
//   deno run -A bench/model_bench.ts [--size small|full]   (markdown table for bench/RESULTS.md)
//   deno bench -A bench/model_bench.ts                     (Deno.bench cases; QLORA_BENCH_SIZE=full for full)
//
// Model FLOPs of a step (the useful work, recomputation not counted, so checkpointing shows as a lower ratio):
// linear layers and lm_head 2·N·K per token forward and the same again for dX backward (frozen weights get no
// dW); LoRA 2·r·(N+K) forward and 3× that backward; causal attention 4·D·nHeads·T(T+1)/2 per sequence forward
// and 2.5× that backward. `small` (llvmpipe): 64-token sequences, vocabulary 4096 for the SmolLM2 block;
// `full`: 512-token sequences and the real 49152 vocabulary.

import { parseArgs } from "node:util";
import { formatBytes, type Gpu, LlamaModel, requestGpu, Rng } from "../mod.ts";
import { writeTinyLlama } from "../lib/testing/mod.ts";
import { modelFlops, type ModelShape } from "./_model_flops.ts";
import { type BenchCase, type BenchSize, benchSize, type BenchWork, registerDenoBench, runCase } from "./_cases.ts";

const R = 16;

function _shapes(size: BenchSize): ModelShape[] {
  const T = size === "full" ? 512 : 64;
  return [
    { name: "tiny", layers: 2, hidden: 64, heads: 4, kvHeads: 2, intermediate: 172, vocab: 260, B: 4, T },
    {
      name: "SmolLM2-135M block",
      layers: 1,
      hidden: 576,
      heads: 9,
      kvHeads: 3,
      intermediate: 1536,
      vocab: size === "full" ? 49152 : 4096,
      B: size === "full" ? 4 : 1,
      T,
    },
  ];
}

/** A bench step that also records the step's peak GPU bytes: all classes, and activations above what was held. */
type _Work = BenchWork & { peak(): { all: number; activations: number } };

async function _setup(gpu: Gpu, s: ModelShape, checkpointing: boolean): Promise<_Work> {
  const dir = await Deno.makeTempDir();
  const { name: _, B, T, ...opts } = s;
  await writeTinyLlama(dir, { ...opts, maxPositions: Math.max(256, T) });
  const model = await LlamaModel.load(gpu, dir, { lora: { r: R, alpha: 2 * R }, gradientCheckpointing: checkpointing });
  await Deno.remove(dir, { recursive: true });
  const rng = new Rng(2);
  const ids = Int32Array.from({ length: B * T }, () => rng.int(s.vocab));
  const batch = { batchSize: B, seqLen: T, inputIds: ids, labels: ids };
  let peak = { all: 0, activations: 0 };
  return {
    step: async () => {
      await gpu.sync();
      const held = gpu.budget.report().byClass.activations;
      gpu.budget.resetPeak();
      await model.forwardBackward(batch);
      const r = gpu.budget.report();
      peak = { all: r.peak, activations: r.peakByClass.activations - held };
    },
    flops: modelFlops(s, R),
    peak: () => peak,
    dispose: () => model.destroy(),
  };
}

/** The model bench cases at `size`. */
export function cases(size: BenchSize): BenchCase[] {
  return _shapes(size).flatMap((s) =>
    [true, false].map((ckpt) => ({
      name: `model fwd+bwd ${s.name} ckpt ${ckpt ? "on" : "off"}`,
      shape: [s.B, s.T],
      roofline: "matmul",
      setup: (gpu: Gpu) => _setup(gpu, s, ckpt),
    }))
  );
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { size: { type: "string" }, iters: { type: "string", default: "3" } } });
  const size = (values.size ?? benchSize()) as BenchSize;
  const gpu = await requestGpu();
  const rows = [
    "| model | B×T | checkpointing | tokens/s | model GFLOP/s | matmul GFLOP/s | ratio | peak GPU bytes | peak activations |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const s of _shapes(size)) {
    for (const ckpt of [true, false]) {
      const c = { name: s.name, shape: [s.B, s.T], roofline: "matmul", setup: (g: Gpu) => _setup(g, s, ckpt) };
      // One extra setup to read the peak of a step (runCase disposes its own).
      const work = await _setup(gpu, s, ckpt);
      await work.step();
      const peak = work.peak();
      work.dispose();
      const r = await runCase(gpu, c, Number(values.iters));
      const tps = (s.B * s.T) / (r.ms / 1e3);
      rows.push(
        `| ${s.name} | ${s.B}×${s.T} | ${ckpt ? "on" : "off"} | ${tps.toFixed(0)} | ${r.gflops} | ` +
          `${r.roofline_value} | ${r.ratio} | ${formatBytes(peak.all)} | ${formatBytes(peak.activations)} |`,
      );
      console.error(rows.at(-1));
    }
  }
  console.log(`Adapter: ${gpu.adapterName}; size ${size}; LoRA r = ${R} on all projections.\n`);
  console.log(rows.join("\n"));
  gpu.destroy();
} else {
  registerDenoBench(cases(benchSize()));
}
