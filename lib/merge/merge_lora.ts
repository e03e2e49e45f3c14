/**
 * Merging a LoRA adapter into one NF4 weight on the GPU: `W' = deq(W_nf4) + s·B·A` (`dequantizeNF4`, then the
 * dense {@linkcode matmul} accumulating `s·B·A` into it), with a plain TypeScript reference.
 *
 * The base a QLoRA adapter was trained against is the dequantized NF4 weight, not the original one, so the
 * merged weight starts from `deq(NF4(W))`: the merged model then computes what the fine-tuned model computed
 * (PEFT's `merge_and_unload` on a 4-bit model does the same).
 *
 * @module
 */

import { Tensor } from "../gpu/tensor.ts";
import { matmul } from "../kernels/matmul_f32.ts";
import { dequantizeNF4 } from "../kernels/nf4_dequantize.ts";
import type { HostQuantized } from "../quant/quant_state.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";
import { dequantize4bitRef } from "../quant/reference.ts";

/** The LoRA update of one `[N, K]` weight: `scale · B·A`. */
export interface LoraDelta {
  /** `[r, K]` row-major. */
  a: Float32Array;
  /** `[N, r]` row-major. */
  b: Float32Array;
  /** `alpha/r` (or `alpha/√r` with rsLoRA). */
  scale: number;
}

function _rank(q: { shape: readonly number[]; label?: string }, d: LoraDelta): number {
  const [N, K] = q.shape;
  const r = d.a.length / K;
  if (q.shape.length !== 2 || !Number.isInteger(r) || r < 1 || d.b.length !== N * r) {
    throw new Error(
      `Merge ${q.label ?? "weight"}: weight [${q.shape}] does not fit A (${d.a.length} values) and B (${d.b.length})`,
    );
  }
  return r;
}

/**
 * The merged weight `deq(q) + scale·B·A` as f32 on the host (`deq(q)` alone without `delta`), computed on the
 * GPU in row chunks that fit a storage binding.
 *
 * @param q The NF4 weight `[N, K]`.
 * @param delta The adapter's A, B and scale, or null.
 * @returns `[N, K]` row-major.
 * @throws {Error} If A and B do not fit the weight's shape, naming it.
 *
 * @example A rank-1 update of a 2×2 weight
 * ```ts
 * import { requestGpu } from "@qlora/webgpu";
 * import { uploadQuantized } from "@qlora/webgpu/kernels";
 * import { quantize4bitRef } from "@qlora/webgpu/quant";
 * import { mergeLoraWeight } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const q = uploadQuantized(gpu, quantize4bitRef(new Float32Array([1, 0, 0, -1]), { shape: [2, 2] }), "w");
 * const w = await mergeLoraWeight(q, { a: new Float32Array([1, 2]), b: new Float32Array([1, 0]), scale: 0.5 });
 * assert.deepEqual([...w], [1.5, 1, 0, -1]);
 * ```
 */
export async function mergeLoraWeight(
  q: QuantizedTensor,
  delta: LoraDelta | null,
): Promise<Float32Array> {
  const gpu = q.gpu;
  const w = dequantizeNF4(q, { label: `${q.label}.merged` });
  try {
    if (!delta) return await w.toFloat32();
    const [N, K] = q.shape;
    const r = _rank(q, delta);
    const rows = Math.max(1, Math.min(N, Math.floor(gpu.maxBindingBytes / (K * 4))));
    const a = Tensor.fromArray(gpu, delta.a, [r, K], { class: "scratch", label: `${q.label}.lora_A` });
    const out = new Float32Array(N * K);
    try {
      for (let r0 = 0; r0 < N; r0 += rows) {
        const n = Math.min(rows, N - r0);
        const b = Tensor.fromArray(gpu, delta.b.subarray(r0 * r, (r0 + n) * r), [n, r], {
          class: "scratch",
          label: `${q.label}.lora_B`,
        });
        // One chunk: accumulate into the dequantized tensor itself; else into a copy of its rows.
        const part = n === N ? w : Tensor.empty(gpu, [n, K], { class: "scratch", label: `${q.label}.rows` });
        if (part !== w) gpu.copy(w.buffer, w.byteOffset + r0 * K * 4, part.buffer, part.byteOffset, n * K * 4);
        matmul(b, a, { alpha: delta.scale, accumulate: true, out: part });
        out.set(await part.toFloat32(), r0 * K);
        b.destroy();
        if (part !== w) part.destroy();
      }
    } finally {
      a.destroy();
    }
    return out;
  } finally {
    w.destroy();
  }
}

/**
 * Plain TypeScript reference of {@linkcode mergeLoraWeight}: `deq(q) + scale·B·A`, the product in float64,
 * rounded once to f32.
 *
 * @param q The host-quantized weight `[N, K]`.
 * @param delta The adapter's A, B and scale, or null.
 * @returns `[N, K]` row-major.
 * @throws {Error} If A and B do not fit the weight's shape.
 *
 * @example
 * ```ts
 * import { quantize4bitRef } from "@qlora/webgpu/quant";
 * import { mergeLoraWeightRef } from "@qlora/webgpu/train";
 * import assert from "node:assert/strict";
 * const q = quantize4bitRef(new Float32Array([1, 0, 0, -1]), { shape: [2, 2] });
 * const w = mergeLoraWeightRef(q, { a: new Float32Array([1, 2]), b: new Float32Array([1, 0]), scale: 0.5 });
 * assert.deepEqual([...w], [1.5, 1, 0, -1]);
 * ```
 */
export function mergeLoraWeightRef(q: HostQuantized, delta: LoraDelta | null): Float32Array {
  const w = dequantize4bitRef(q);
  if (!delta) return w;
  const [N, K] = q.state.shape;
  const r = _rank({ shape: q.state.shape }, delta);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < K; j++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += delta.b[i * r + k] * delta.a[k * K + j];
      w[i * K + j] = w[i * K + j] + delta.scale * s;
    }
  }
  return w;
}
