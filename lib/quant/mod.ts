/**
 * 4-bit quantization without a GPU, as `bitsandbytes.functional`: the NF4/FP4/INT4 code tables, a TypeScript reference
 * of blockwise quantization with double quantization, bitsandbytes `QuantState` interchange, and the
 * `QuantizedTensor` type the kernels take.
 *
 * @example The storage cost of NF4 with and without double quantization
 * ```ts
 * import { bitsPerParameter, NF4_CODE } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * assert.equal(NF4_CODE.length, 16);
 * assert.equal(bitsPerParameter(64, false), 4.5);
 * assert.equal(bitsPerParameter(64, true).toFixed(3), "4.127");
 * ```
 *
 * @module
 */

export * from "./code_tables.ts";
export * from "./quant_state.ts";
export * from "./quantized_tensor.ts";
export * from "./reference.ts";
