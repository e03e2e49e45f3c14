// Helpers of the NF4 quantize and dequantize tests.
import assert from "node:assert/strict";
import { type Gpu, type QuantizedTensor, quantizeNF4, type QuantizeNF4Options, Tensor } from "@qlora/webgpu";
import { f32ToBf16 } from "@qlora/webgpu/gpu";

/** Same float32 bits (so -0 differs from 0). */
export function assertBits(actual: ArrayLike<number>, expected: ArrayLike<number>, label: string): void {
  const a = new Uint32Array(Float32Array.from(actual).buffer);
  const e = new Uint32Array(Float32Array.from(expected).buffer);
  assert.equal(a.length, e.length, `${label}: length`);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) assert.fail(`${label}[${i}]: got ${actual[i]}, want ${expected[i]}`);
  }
}

/** Quantizes `x` on `on`, uploaded as `opts.dtype` (default f32). */
export async function gpuQuantize(
  on: Gpu,
  x: Float32Array,
  opts: QuantizeNF4Options & { dtype?: "f32" | "f16" | "bf16" },
): Promise<QuantizedTensor> {
  const dtype = opts.dtype ?? "f32";
  const data = dtype === "f32" ? x : dtype === "f16" ? Float16Array.from(x) : f32ToBf16(x);
  const t = Tensor.fromArray(on, data, [x.length], { dtype, label: "x" });
  try {
    return await quantizeNF4(on, t, opts);
  } finally {
    t.destroy();
  }
}
