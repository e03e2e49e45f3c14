// Fused causal GQA attention, forward and forward+backward, in GFLOP/s as a ratio to the dense f32 matmul measured
// in the same run (attention is a pair of matmuls per head, so the matmul is its natural roofline).
// Shapes: Llama-3.2-1B-like heads (nHeads 32, nKvHeads 8, D 64) at T = 2048 (`full`); T = 256 and 8 heads / 2 KV
// heads (`small`, the default, for llvmpipe).
//
//   deno bench -A bench/attention_bench.ts           (QLORA_BENCH_SIZE=full for the full shapes)
//   deno run -A bench/attention_bench.ts             (also prints tokens/s)
//   deno task bench:report [--size small|full]       (every registered case, one JSON array)
//
// FLOPs counted (causal, so half of the T×T scores): forward 2 matmuls, 2·2·T²·D/2 per head and sequence;
// forward+backward adds the FlashAttention-2 backward's 5 matmuls (2.5× the forward), i.e. 3.5× the forward.

import { type Gpu, requestGpu, Rng, Tensor } from "../mod.ts";
import { attentionBackward, attentionForward, type AttentionShape } from "../lib/kernels/mod.ts";
import { type BenchCase, type BenchSize, benchSize, type BenchWork, registerDenoBench, runCase } from "./_cases.ts";

/** The attention bench cases at `size`. */
export function cases(size: BenchSize): BenchCase[] {
  const shape: AttentionShape = size === "full"
    ? { B: 1, T: 2048, nHeads: 32, nKvHeads: 8, headDim: 64 }
    : { B: 1, T: 256, nHeads: 8, nKvHeads: 2, headDim: 64 };
  const dims = [shape.B, shape.T, shape.nHeads, shape.nKvHeads, shape.headDim];
  return [
    { name: "attention forward", shape: dims, roofline: "matmul", setup: (gpu) => _setup(gpu, shape, false) },
    { name: "attention forward+backward", shape: dims, roofline: "matmul", setup: (gpu) => _setup(gpu, shape, true) },
  ];
}

function _setup(gpu: Gpu, s: AttentionShape, backward: boolean): Promise<BenchWork> {
  const rng = new Rng(1);
  const qn = s.B * s.T * s.nHeads * s.headDim, kn = s.B * s.T * s.nKvHeads * s.headDim;
  const [q, dOut] = [0, 1].map(() => Tensor.fromArray(gpu, rng.normalArray(qn), [qn]));
  const [k, v] = [0, 1].map(() => Tensor.fromArray(gpu, rng.normalArray(kn), [kn]));
  const fwd = attentionForward(gpu, q, k, v, s);
  const grads = attentionBackward(gpu, q, k, v, fwd, dOut, s);
  const forwardFlops = 2 * s.B * s.nHeads * s.T * s.T * s.headDim;
  return Promise.resolve({
    step: () => {
      attentionForward(gpu, q, k, v, s, fwd);
      if (backward) attentionBackward(gpu, q, k, v, fwd, dOut, s, grads);
    },
    flops: forwardFlops * (backward ? 3.5 : 1),
    dispose: () => [q, dOut, k, v, fwd.out, fwd.lse, grads.dq, grads.dk, grads.dv].forEach((t) => t.destroy()),
  });
}

registerDenoBench(cases(benchSize()));

if (import.meta.main) {
  const gpu = await requestGpu();
  for (const c of cases(benchSize())) {
    const r = await runCase(gpu, c);
    const tokens = c.shape[0] * c.shape[1];
    console.log(
      `${c.name} [${c.shape.join("×")}]: ${r.ms} ms, ${r.gflops} GFLOP/s = ${r.ratio} of dense matmul ` +
        `(${r.roofline_value} GFLOP/s), ${Math.round(tokens / (r.ms / 1e3))} tokens/s per layer (${r.timer} timer)`,
    );
  }
}
