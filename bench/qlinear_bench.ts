// QLoRA linear bench: the fused NF4 dequantize-matmul (GEMV and GEMM paths) with LoRA r = 64, its backward, and
// the dense f32 matmul, on Llama-7B projection shapes. Registry cases (bench/_cases.ts): GEMV forward in GB/s of
// quantized weight bytes against the copy roofline; GEMM forward/backward and the dense matmul in GFLOP/s against
// the dense matmul roofline. Run as a script, it also prints the same-run ratios that judge the fused kernel: fused GEMM over
// the dense matmul of the same shape, fused over "dequantize to a buffer, then dense matmul", backward over
// forward, and the peak GPU bytes of a forward+backward next to the size deq(W) would take.
//
//   deno run -A bench/qlinear_bench.ts [--size small|full] [--iters 5]   (markdown table for bench/RESULTS.md)
//   deno bench -A bench/qlinear_bench.ts                                (QLORA_BENCH_SIZE=full for full shapes)
//   deno task bench:report                                              (every registered case)
//
// `small` (the default, for llvmpipe) divides every dimension by 8 and uses M ∈ {1, 16, 128};
// `full` is 4096×4096, 11008×4096, 4096×11008 with M ∈ {1, 16, 512, 2048}.

import { parseArgs } from "node:util";
import {
  dequantizeNF4,
  formatBytes,
  freeQuantized,
  type Gpu,
  type LoraAdapter,
  qlinearBackward,
  qlinearForward,
  type QuantizedTensor,
  quantizeNF4,
  requestGpu,
  Rng,
  Tensor,
} from "../mod.ts";
import { matmul, nf4Linear } from "../lib/kernels/mod.ts";
import { quantizedBytes } from "../lib/kernels/_kernel.ts";
import { type BenchCase, type BenchSize, benchSize, type BenchWork, registerDenoBench } from "./_cases.ts";
import { copyBandwidth, rooflineValue } from "./_roofline.ts";
import { timeGpu } from "./_timing.ts";

const R = 64;

function _shapes(size: BenchSize): { N: number; K: number; Ms: number[] }[] {
  const d = size === "full" ? 1 : 8;
  const Ms = size === "full" ? [1, 16, 512, 2048] : [1, 16, 128];
  return [[4096, 4096], [11008, 4096], [4096, 11008]].map(([N, K]) => ({ N: N / d, K: K / d, Ms }));
}

interface _Layer {
  w: QuantizedTensor;
  lora: LoraAdapter;
  x: Tensor;
  dy: Tensor;
  dispose(): void;
}

async function _layer(gpu: Gpu, M: number, N: number, K: number): Promise<_Layer> {
  const rng = new Rng(1);
  const dense = Tensor.fromArray(gpu, rng.normalArray(N * K, 0, 0.02), [N, K], { class: "weights", label: "w" });
  const w = await quantizeNF4(gpu, dense);
  dense.destroy();
  const lora = {
    a: Tensor.fromArray(gpu, rng.uniformArray(R * K, -0.01, 0.01), [R, K], { class: "weights", label: "A" }),
    b: Tensor.fromArray(gpu, rng.normalArray(N * R, 0, 0.01), [N, R], { class: "weights", label: "B" }),
    scale: 16 / R,
    dropout: 0.05,
  };
  const x = Tensor.fromArray(gpu, rng.normalArray(M * K), [M, K], { label: "x" });
  const dy = Tensor.fromArray(gpu, rng.normalArray(M * N, 0, 0.01), [M, N], { label: "dy" });
  const dispose = () => {
    for (const t of [lora.a, lora.b, x, dy]) t.destroy();
    freeQuantized(w);
  };
  return { w, lora, x, dy, dispose };
}

function _quantizedBytes(w: QuantizedTensor): number {
  return quantizedBytes(w, w.shape[0] * w.shape[1]);
}

function _forward(l: _Layer): () => void {
  return () => {
    const { y, xa } = qlinearForward(l.x, l.w, l.lora, { seed: 1 });
    y.destroy();
    xa.destroy();
  };
}

function _backward(l: _Layer, xa: Tensor): () => void {
  return () => {
    const g = qlinearBackward(l.dy, l.x, xa, l.w, l.lora, { seed: 1 });
    for (const t of [g.dx, g.dA, g.dB]) t?.destroy();
  };
}

/** FLOPs of the layer's forward (the quantized product and both LoRA products). */
function _forwardFlops(M: number, N: number, K: number): number {
  return 2 * M * N * K + 2 * M * R * (K + N);
}

/** The qlinear bench cases at `size`. */
export function cases(size: BenchSize): BenchCase[] {
  const out: BenchCase[] = [];
  for (const { N, K, Ms } of _shapes(size)) {
    for (const M of Ms) {
      const shape = [M, N, K];
      if (M <= 16) {
        out.push({
          name: "qlinear forward gemv r64",
          shape,
          roofline: "copy",
          setup: async (gpu): Promise<BenchWork> => {
            const l = await _layer(gpu, M, N, K);
            return { step: () => nf4Linear(l.x, l.w).destroy(), bytes: _quantizedBytes(l.w), dispose: l.dispose };
          },
        });
        continue;
      }
      out.push(
        {
          name: "qlinear forward gemm r64",
          shape,
          roofline: "matmul",
          setup: async (gpu): Promise<BenchWork> => {
            const l = await _layer(gpu, M, N, K);
            return { step: _forward(l), flops: _forwardFlops(M, N, K), dispose: l.dispose };
          },
        },
        {
          name: "qlinear backward gemm r64",
          shape,
          roofline: "matmul",
          setup: async (gpu): Promise<BenchWork> => {
            const l = await _layer(gpu, M, N, K);
            const { y, xa } = qlinearForward(l.x, l.w, l.lora, { seed: 1 });
            y.destroy();
            // dX (2MNK), dY·B, dB, dA, (dY·B)·A: 2MNK + 4MR(N + K)... counted as issued.
            const flops = 2 * M * N * K + 2 * M * R * (2 * N + 2 * K);
            return {
              step: _backward(l, xa),
              flops,
              dispose: () => {
                xa.destroy();
                l.dispose();
              },
            };
          },
        },
        {
          name: "matmul f32 X·Wᵀ",
          shape,
          roofline: "matmul",
          setup: (gpu): Promise<BenchWork> => {
            const rng = new Rng(2);
            const x = Tensor.fromArray(gpu, rng.normalArray(M * K), [M, K]);
            const w = Tensor.fromArray(gpu, rng.normalArray(N * K), [N, K]);
            return Promise.resolve({
              step: () => matmul(x, w, { transB: true }).destroy(),
              flops: 2 * M * N * K,
              dispose: () => {
                x.destroy();
                w.destroy();
              },
            });
          },
        },
      );
    }
  }
  return out;
}

/** The markdown table of the same-run ratios. */
async function _table(gpu: Gpu, size: BenchSize, iters: number): Promise<string[]> {
  const copy = await copyBandwidth(gpu);
  const rows = [
    `Adapter: ${gpu.adapterName}; size ${size}; r = ${R}; copy roofline ${(copy / 1e9).toFixed(2)} GB/s.`,
    "",
    "| M × N × K | path | forward | NF4 product | rate | ratio | fused / (deq + matmul) | bwd / fwd | f16 / f32 | peak fwd+bwd (deq(W) f32) |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const { N, K, Ms } of _shapes(size)) {
    for (const M of Ms) {
      const l = await _layer(gpu, M, N, K);
      const gemv = M <= 16;
      const { y, xa } = qlinearForward(l.x, l.w, l.lora, { seed: 1 });
      y.destroy();
      await gpu.sync();
      const base = gpu.budget.report().current;
      gpu.budget.resetPeak();
      _forward(l)();
      _backward(l, xa)();
      await gpu.sync();
      const peak = gpu.budget.report().peak - base;
      const wd = dequantizeNF4(l.w);
      const fns: Record<string, () => void> = {
        fused: () => nf4Linear(l.x, l.w).destroy(),
        forward: _forward(l),
        backward: _backward(l, xa),
        dense: () => matmul(l.x, wd, { transB: true }).destroy(),
        dequantMatmul: () => {
          const t = dequantizeNF4(l.w);
          matmul(l.x, t, { transB: true }).destroy();
          t.destroy();
        },
      };
      if (!gemv && gpu.features.shaderF16) fns.f16 = () => nf4Linear(l.x, l.w, { precision: "f16" }).destroy();
      // Interleaved rounds, best median per function: other jobs on a shared machine only ever slow a run down,
      // and interleaving gives every function the same chance at a quiet moment.
      const t: Record<string, number> = {};
      for (let round = 0; round < 3; round++) {
        for (const [name, fn] of Object.entries(fns)) {
          t[name] = Math.min(t[name] ?? Infinity, (await timeGpu(gpu, fn, iters)).seconds);
        }
      }
      wd.destroy();
      xa.destroy();
      const bytes = _quantizedBytes(l.w);
      const rate = gemv
        ? `${(bytes / t.fused / 1e9).toFixed(3)} GB/s`
        : `${((2 * M * N * K) / t.fused / 1e9).toFixed(2)} GFLOP/s`;
      const ratio = gemv
        ? `${(bytes / t.fused / copy).toFixed(3)} of copy`
        : `${(t.dense / t.fused).toFixed(2)} of dense`;
      const f16 = t.f16 ? `${(t.fused / t.f16).toFixed(2)}× faster` : "–";
      const ms = (v: number) => `${(v * 1e3).toFixed(2)} ms`;
      rows.push(
        `| ${M} × ${N} × ${K} | ${gemv ? "gemv" : "gemm"} | ${ms(t.forward)} | ${ms(t.fused)} | ${rate} | ${ratio} | ` +
          `${(t.dequantMatmul / t.fused).toFixed(2)}× faster | ${(t.backward / t.forward).toFixed(2)} | ${f16} | ` +
          `${formatBytes(peak)} (${formatBytes(N * K * 4)}) |`,
      );
      l.dispose();
    }
  }
  rows.push("", `Dense matmul roofline: ${(await rooflineValue(gpu, "matmul")).toFixed(2)} GFLOP/s.`);
  return rows;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { size: { type: "string" }, iters: { type: "string", default: "5" } } });
  const size = (values.size ?? benchSize()) as BenchSize;
  const gpu = await requestGpu();
  console.log((await _table(gpu, size, Number(values.iters))).join("\n"));
  gpu.destroy();
} else {
  registerDenoBench(cases(benchSize()));
}
