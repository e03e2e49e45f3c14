/**
 * 4-bit blockwise dequantization on the GPU (`wgsl/nf4_dequantize.wgsl`), bitsandbytes' `dequantize_4bit`:
 * byte-exact f32 with the reference in `lib/quant/reference.ts`, or f16. Inputs past one storage binding are
 * processed in chunks of whole blocks.
 *
 * @module
 */

import { DTYPE_BYTES } from "../dtype.ts";
import { grid2d } from "../gpu/device.ts";
import { Tensor } from "../gpu/tensor.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";
import { checkWhole, chunkElems, f32Bits, params, quantizedBytes } from "./_kernel.ts";

/** Options for {@linkcode dequantizeNF4}. */
export interface DequantizeNF4Options {
  /** Output element type (default `f32`); `f16` is the f32 result rounded to nearest even (no f16 feature needed). */
  dtype?: "f32" | "f16";
  /** Label of the output tensor (default `<label>.dequant`). */
  label?: string;
  /** Most workgroups per grid dimension (default the device's); smaller values force 2-D grids (for tests). */
  maxWorkgroupsPerDimension?: number;
}

/**
 * Dequantizes on the GPU (bitsandbytes' `dequantize_4bit`): `out[i] = code[idx[i]] * scale[i / blocksize]`, f32
 * (byte-exact with the reference) or f16. Memory-bound: each thread expands 8 values with vec4 stores.
 *
 * @param q The quantized tensor.
 * @param opts Output dtype and label.
 * @returns A new tensor of `q.shape` (class `activations`; the caller frees it).
 *
 * @example
 * ```ts
 * import { dequantizeNF4, requestGpu } from "@qlora/webgpu";
 * import { uploadQuantized } from "@qlora/webgpu/kernels";
 * import { quantize4bitRef } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const q = uploadQuantized(gpu, quantize4bitRef(new Float32Array([2, -2, 0])), "w");
 * assert.deepEqual([...await dequantizeNF4(q).toFloat32()], [2, -2, 0]);
 * ```
 */
export function dequantizeNF4(q: QuantizedTensor, opts: DequantizeNF4Options = {}): Tensor {
  const gpu = q.gpu;
  const dtype = opts.dtype ?? "f32";
  const label = opts.label ?? `${q.label}.dequant`;
  const n = q.shape.reduce((a, b) => a * b, 1);
  const ob = DTYPE_BYTES[dtype];
  // Padded to whole 8-value groups: the kernel stores full vec4s.
  const out = gpu.createBuffer(Math.ceil(n / 8) * 8 * ob, "activations", label);
  const chunk = chunkElems(gpu, ob, q.blocksize, q.label);
  checkWhole(gpu, q.label, q.absmax, q.tables);
  const maxGrid = opts.maxWorkgroupsPerDimension ?? gpu.limits.maxComputeWorkgroupsPerDimension;
  const wg = 256;
  const constants: Record<string, number> = {
    DQ: q.doubleQuant ? 1 : 0,
    OUT_F16: dtype === "f16" ? 1 : 0,
    BLOCK: q.blocksize,
    WG: wg,
    CONST_CODE: q.codeValues ? 1 : 0,
  };
  q.codeValues?.forEach((v, k) => constants[`C${k}`] = v);
  // Two vec4 stores per thread: 4 f32 or 8 f16 values each.
  const perWorkgroup = wg * 2 * (dtype === "f16" ? 8 : 4);
  for (let start = 0; start < n; start += chunk) {
    const len = Math.min(chunk, n - start);
    gpu.dispatch({
      kernel: "nf4_dequantize",
      constants,
      bindings: [
        { buffer: q.packed, offset: start / 2, size: Math.ceil(len / 8) * 4 },
        q.absmax,
        q.tables,
        { buffer: out, offset: start * ob, size: Math.ceil(len / 8) * 8 * ob },
        params([len, start / q.blocksize, f32Bits(q.offset), 0]),
      ],
      workgroups: grid2d(Math.ceil(len / perWorkgroup), maxGrid),
      bytes: quantizedBytes(q, len) + len * ob, // the chunk's codes and scales read, its values written
    });
  }
  return new Tensor(gpu, out, q.shape, dtype, label);
}
