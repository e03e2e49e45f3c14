/**
 * Reconstruction error of the 4-bit code tables on a weight tensor: the QLoRA paper's argument for NF4, in
 * miniature (normally distributed weights are reconstructed best by NF4, then FP4, then a uniform INT4).
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { QuantType } from "../quant/code_tables.ts";
import { dequantizeNF4 } from "./nf4_dequantize.ts";
import { freeQuantized, quantizeNF4 } from "./nf4_quantize.ts";
import { bitsPerParameter } from "../quant/reference.ts";

/** One quantization scheme's reconstruction error. */
export interface QuantErrorRow {
  /** Code table. */
  quantType: QuantType;
  /** Whether absmax was double-quantized. */
  doubleQuant: boolean;
  /** Values per block. */
  blocksize: number;
  /** Relative L2 error ‖deq(q(w)) − w‖ / ‖w‖. */
  relError: number;
  /** Mean absolute error. */
  meanAbsError: number;
  /** Storage cost for this tensor (bits per parameter). */
  bitsPerParameter: number;
}

/** Schemes compared by default: the three code tables with double quantization, and NF4 without it. */
export const DEFAULT_SCHEMES: readonly { quantType: QuantType; doubleQuant: boolean }[] = [
  { quantType: "nf4", doubleQuant: true },
  { quantType: "nf4", doubleQuant: false },
  { quantType: "fp4", doubleQuant: true },
  { quantType: "int4", doubleQuant: true },
];

/**
 * Quantizes `weights` on the GPU with each scheme, dequantizes, and measures the error against the original.
 *
 * @param gpu The device.
 * @param weights An f32, f16 or bf16 tensor.
 * @param opts Block size (default 64) and schemes (default {@linkcode DEFAULT_SCHEMES}).
 * @returns One row per scheme.
 *
 * @example NF4 beats INT4 on normal weights
 * ```ts
 * import { quantizationErrors, requestGpu, Rng, Tensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const w = Tensor.fromArray(gpu, new Rng(1).normalArray(4096, 0, 0.02), [64, 64]);
 * const [nf4, , , int4] = await quantizationErrors(gpu, w);
 * assert.ok(nf4.relError < int4.relError);
 * ```
 */
export async function quantizationErrors(
  gpu: Gpu,
  weights: Tensor,
  opts: { blocksize?: number; schemes?: readonly { quantType: QuantType; doubleQuant: boolean }[] } = {},
): Promise<QuantErrorRow[]> {
  const blocksize = opts.blocksize ?? 64;
  const w = await weights.toFloat32();
  let norm = 0;
  for (const v of w) norm += v * v;
  const rows: QuantErrorRow[] = [];
  for (const { quantType, doubleQuant } of opts.schemes ?? DEFAULT_SCHEMES) {
    const q = await quantizeNF4(gpu, weights, { quantType, doubleQuant, blocksize });
    const t = dequantizeNF4(q);
    const y = await t.toFloat32();
    t.destroy();
    freeQuantized(q);
    let sq = 0;
    let abs = 0;
    for (let i = 0; i < w.length; i++) {
      const e = y[i] - w[i];
      sq += e * e;
      abs += Math.abs(e);
    }
    rows.push({
      quantType,
      doubleQuant,
      blocksize,
      relError: Math.sqrt(sq / Math.max(norm, 1e-300)),
      meanAbsError: abs / w.length,
      bitsPerParameter: bitsPerParameter(blocksize, doubleQuant, w.length),
    });
  }
  return rows;
}
