/**
 * The GPU-side form of a 4-bit blockwise-quantized weight (NF4, FP4 or INT4), shared by the quantize/dequantize
 * kernels and the fused dequantize-matmul.
 *
 * Layout, identical to bitsandbytes' so that checkpoints move both ways (see `tests/fixtures/README.md`):
 * - the tensor is flattened row-major (`n = numel(shape)` values); block `b` covers values `[b*blocksize, (b+1)*blocksize)`
 *   and may straddle rows;
 * - `packed` holds `ceil(n/2)` bytes: byte `k = i >> 1` holds value `i` in its high nibble when `i` is even, low
 *   nibble when odd. In WGSL the bytes are read from `array<u32>` little-endian: byte `k` is
 *   `(packed[k >> 2] >> (8 * (k & 3))) & 0xff`;
 * - without double quantization `absmax` is `f32[nb]`;
 * - `tables` holds `code`, `code2` and `absmax2` in one f32 buffer, at element offsets 0, 16 and 272;
 * - with double quantization `absmax` holds `nb` 8-bit codes (bytes, packed four to a u32 as above), and the
 *   per-block scale is `code2[absmax[b]] * absmax2[b / 256] + offset` (f32 multiply then f32 add).
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { QuantType } from "./code_tables.ts";
import type { SourceDType } from "./quant_state.ts";

/** Block size of the second-level (double) quantization of absmax, fixed by bitsandbytes. */
export const DOUBLE_QUANT_BLOCKSIZE = 256;

/** A 4-bit blockwise-quantized tensor on the GPU. Buffers are accounted in `gpu.budget` as `weights`. */
export interface QuantizedTensor {
  /** The device holding the buffers. */
  readonly gpu: Gpu;
  /** Code table in `code` (`nf4`, `fp4`, or this toolkit's `int4`). */
  readonly quantType: QuantType;
  /** Logical shape of the original tensor (e.g. `[out_features, in_features]`). */
  readonly shape: readonly number[];
  /** Values per first-level block (64 by default; a power of two ≥ 64). */
  readonly blocksize: number;
  /** Whether absmax is double-quantized. */
  readonly doubleQuant: boolean;
  /** `ceil(n/2)` bytes of 4-bit codes (buffer padded to a multiple of 4 bytes). */
  readonly packed: GPUBuffer;
  /** `f32[nb]` scales, or `nb` u8 codes when `doubleQuant`. */
  readonly absmax: GPUBuffer;
  /**
   * The small tables, f32 `[16 code | 256 code2 | ceil(nb/256) absmax2]` (`code` alone without double
   * quantization): the 4-bit code table (bitsandbytes' `quant_map`), the signed dynamic 8-bit map and the
   * second-level scales, in one buffer so that a kernel binds them as one (WebGPU allows 8 storage buffers).
   */
  readonly tables: GPUBuffer;
  /** Mean of the first-level absmax, added back after double dequantization (0 without it). */
  readonly offset: number;
  /** Names the tensor in errors (e.g. `model.layers.0.self_attn.q_proj.weight`). */
  readonly label: string;
  /** Element type of the tensor before quantization (recorded for checkpoints; `f32` when unset). */
  readonly dtype?: SourceDType;
  /** Host copy of `code`'s 16 values, when known: kernels may bake the table into the pipeline. */
  readonly codeValues?: Float32Array;
}
