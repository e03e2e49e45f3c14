// NF4 quantize and dequantize bandwidth, as a ratio to the device copy bandwidth measured in the same run.
// Shapes: Llama-7B's 4096×4096 and 11008×4096 (`full`), each dimension / 8 (`small`, the default, for llvmpipe).
//
//   deno bench -A bench/nf4_bench.ts                 (QLORA_BENCH_SIZE=full for the full shapes)
//   deno task bench:report [--size small|full]       (every registered case, one JSON array)
//
// Bytes counted: dequantize reads the packed codes and absmax codes (+ absmax2) and writes the output;
// quantize reads the input and writes packed codes and f32 absmax, then (double quantization) reads the absmax
// and writes their 8-bit codes. Quantize is timed without its final readback (beginQuantizeNF4).

import { dequantizeNF4, freeQuantized, type Gpu, quantizeNF4, Rng, Tensor } from "../mod.ts";
import { beginQuantizeNF4 } from "../lib/kernels/mod.ts";
import { type BenchCase, type BenchSize, benchSize, type BenchWork, registerDenoBench } from "./_cases.ts";

/** The NF4 bench cases at `size`. */
export function cases(size: BenchSize): BenchCase[] {
  const d = size === "full" ? 1 : 8;
  const out: BenchCase[] = [];
  for (const [rows, cols] of [[4096, 4096], [11008, 4096]]) {
    const shape = [rows / d, cols / d];
    out.push(
      { name: "nf4 quantize f32 (DQ)", shape, roofline: "copy", setup: (gpu) => _quantize(gpu, shape) },
      { name: "nf4 dequantize f32 (DQ)", shape, roofline: "copy", setup: (gpu) => _dequantize(gpu, shape, "f32") },
      { name: "nf4 dequantize f16 (DQ)", shape, roofline: "copy", setup: (gpu) => _dequantize(gpu, shape, "f16") },
    );
  }
  return out;
}

function _weights(gpu: Gpu, shape: number[]): Tensor {
  const n = shape[0] * shape[1];
  return Tensor.fromArray(gpu, new Rng(1).normalArray(n, 0, 0.02), shape, { class: "weights", label: "w" });
}

function _quantize(gpu: Gpu, shape: number[]): Promise<BenchWork> {
  const w = _weights(gpu, shape);
  const n = w.size;
  const nb = Math.ceil(n / 64);
  return Promise.resolve({
    step: () => beginQuantizeNF4(gpu, w).cancel(),
    bytes: 4 * n + n / 2 + 4 * nb + 4 * nb + nb,
    dispose: () => w.destroy(),
  });
}

async function _dequantize(gpu: Gpu, shape: number[], dtype: "f32" | "f16"): Promise<BenchWork> {
  const w = _weights(gpu, shape);
  const q = await quantizeNF4(gpu, w);
  w.destroy();
  const n = shape[0] * shape[1];
  const nb = Math.ceil(n / 64);
  return {
    step: () => dequantizeNF4(q, { dtype }).destroy(),
    bytes: n / 2 + nb + 4 * Math.ceil(nb / 256) + n * (dtype === "f32" ? 4 : 2),
    dispose: () => freeQuantized(q),
  };
}

registerDenoBench(cases(benchSize()));
