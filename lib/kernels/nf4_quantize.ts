/**
 * 4-bit blockwise quantization on the GPU (`wgsl/nf4_quantize.wgsl`), in the spirit of `bitsandbytes.functional`:
 * {@linkcode quantizeNF4} (NF4 by default; FP4 and INT4 too) with double quantization of the absmax, and moving a
 * `QuantizedTensor` to and from its host form (`HostQuantized`, bitsandbytes' layout). Results are byte-exact
 * with the reference in `lib/quant/reference.ts`; `dequantizeNF4` is in `nf4_dequantize.ts`.
 *
 * @module
 */

import { bytesToF32, DTYPE_BYTES } from "../dtype.ts";
import { type Gpu, grid2d } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import {
  codeTable,
  DYNAMIC_CODE_SIGNED,
  FP4_THRESHOLDS,
  INT4_THRESHOLDS,
  NF4_THRESHOLDS,
  type QuantType,
} from "../quant/code_tables.ts";
import type { HostQuantized, QuantState, SourceDType } from "../quant/quant_state.ts";
import { DOUBLE_QUANT_BLOCKSIZE, type QuantizedTensor } from "../quant/quantized_tensor.ts";
import { checkBlocksize } from "../quant/reference.ts";
import { checkWhole, chunkElems, f32Bits, params } from "./_kernel.ts";

/** Options for {@linkcode quantizeNF4}. */
export interface QuantizeNF4Options {
  /** Values per block: a power of two ≥ 64 (default 64). */
  blocksize?: number;
  /** Double-quantize the absmax (default true). */
  doubleQuant?: boolean;
  /** Code table (default `nf4`). */
  quantType?: QuantType;
  /** Names the tensor in errors and buffer labels (default the input's label). */
  label?: string;
  /** Most workgroups per grid dimension (default the device's); smaller values force 2-D grids (for tests). */
  maxWorkgroupsPerDimension?: number;
}

const QTYPE_ID: Record<QuantType, number> = { nf4: 0, fp4: 1, int4: 2 };
const DTYPE_ID: Record<SourceDType, number> = { f32: 0, f16: 1, bf16: 2 };
/** Values per quantize workgroup when blocks are small (256 threads × 8 values). */
const SPAN_MIN = 2048;

/** A quantization recorded on the GPU but not yet checked; from {@linkcode beginQuantizeNF4}. */
export interface QuantizeJob {
  /** Waits for the GPU, checks the input was finite, and returns the quantized tensor (or throws). */
  finish(): Promise<QuantizedTensor>;
  /** Frees everything without waiting (for benchmarks and abandoned work). */
  cancel(): void;
}

/**
 * Quantizes a tensor to 4 bits in blocks on the GPU (bitsandbytes' `quantize_4bit`): NF4 by default, with double
 * quantization of the absmax. Any length (a partial last block is fine); inputs larger than a storage binding are
 * processed in chunks of whole blocks. The offset (mean absmax) is a deterministic pairwise GPU reduction, and
 * NaN/Inf values are caught on the GPU (an atomic minimum of the first bad index).
 *
 * @param gpu The device.
 * @param input An `f32`, `f16` or `bf16` tensor (any shape; flattened row-major).
 * @param opts Block size, double quantization, code table, label.
 * @returns The quantized tensor (buffers accounted as `weights`).
 * @throws {Error} If the input holds NaN or ±Inf (naming the tensor and the first bad index), or its dtype or
 * the block size is unsupported.
 *
 * @example
 * ```ts
 * import { dequantizeNF4, quantizeNF4, requestGpu, Tensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const x = Tensor.fromArray(gpu, new Float32Array([1, -1, 0, 0.5]), [2, 2], { label: "w" });
 * const q = await quantizeNF4(gpu, x);
 * assert.equal(q.offset, 1);
 * const y = await dequantizeNF4(q).toFloat32();
 * assert.deepEqual([...y.subarray(0, 3)], [1, -1, 0]);
 * ```
 */
export function quantizeNF4(gpu: Gpu, input: Tensor, opts: QuantizeNF4Options = {}): Promise<QuantizedTensor> {
  return beginQuantizeNF4(gpu, input, opts).finish();
}

/**
 * Records the kernels of {@linkcode quantizeNF4} without waiting for them, so that many tensors can be queued
 * before the first check. Finish jobs one at a time (each reads a few bytes back).
 *
 * @param gpu The device.
 * @param input An `f32`, `f16` or `bf16` tensor.
 * @param opts As for {@linkcode quantizeNF4}.
 * @returns A job to finish (or cancel).
 *
 * @example
 * ```ts
 * import { requestGpu, Tensor } from "@qlora/webgpu";
 * import { beginQuantizeNF4 } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const x = Tensor.fromArray(gpu, new Float32Array(128).fill(0.5), [128]);
 * const jobs = [beginQuantizeNF4(gpu, x), beginQuantizeNF4(gpu, x, { quantType: "fp4" })];
 * const done = [];
 * for (const job of jobs) done.push(await job.finish()); // one at a time: each reads back
 * assert.deepEqual(done.map((q) => q.quantType), ["nf4", "fp4"]);
 * ```
 */
export function beginQuantizeNF4(gpu: Gpu, input: Tensor, opts: QuantizeNF4Options = {}): QuantizeJob {
  const blocksize = opts.blocksize ?? 64;
  checkBlocksize(blocksize);
  const doubleQuant = opts.doubleQuant ?? true;
  const quantType = opts.quantType ?? "nf4";
  const label = opts.label ?? input.label;
  const dtype = input.dtype as SourceDType;
  if (DTYPE_ID[dtype] === undefined) {
    throw new Error(`Tensor "${label}": cannot quantize dtype ${input.dtype} (f32, f16 or bf16)`);
  }
  const n = input.size;
  if (n === 0 || n >= 2 ** 32) throw new Error(`Tensor "${label}": cannot quantize ${n} values (1 to 2^32-1)`);
  const nb = Math.ceil(n / blocksize);
  const span = Math.max(SPAN_MIN, blocksize);
  const wgs = Math.ceil(n / span);
  const eb = DTYPE_BYTES[dtype];

  const packed = gpu.createBuffer(Math.ceil(n / 8) * 4, "weights", `${label}.packed`);
  const absmaxF32 = gpu.createBuffer(nb * 4, doubleQuant ? "scratch" : "weights", `${label}.absmax`);
  const partial = gpu.createBuffer(wgs * 4, "scratch", `${label}.absmax partial sums`);
  const stats = gpu.createBuffer(16, "scratch", `${label}.quantize stats`);
  const groups = doubleQuant ? Math.ceil(nb / DOUBLE_QUANT_BLOCKSIZE) : 0;
  const tables = _tables(gpu, label, groups);
  gpu.write(stats, new Uint32Array([0xffffffff, 0, 0, 0]));
  gpu.write(tables, codeTable(quantType));
  const thresholds = quantType === "nf4" ? NF4_THRESHOLDS : quantType === "fp4" ? FP4_THRESHOLDS : INT4_THRESHOLDS;
  const constants: Record<string, number> = {
    DTYPE: DTYPE_ID[dtype],
    QTYPE: QTYPE_ID[quantType],
    BLOCK: blocksize,
    SUMS: doubleQuant ? 1 : 0,
  };
  for (let k = 0; k < 15; k++) constants[`T${k}`] = thresholds[k] ?? 2;
  const chunk = chunkElems(gpu, eb, span, label);
  checkWhole(gpu, label, absmaxF32, partial);
  const maxGrid = opts.maxWorkgroupsPerDimension ?? gpu.limits.maxComputeWorkgroupsPerDimension;
  for (let start = 0; start < n; start += chunk) {
    const len = Math.min(chunk, n - start);
    gpu.dispatch({
      kernel: "nf4_quantize",
      entryPoint: "quantize",
      constants,
      bindings: [
        // Whole vec4s for the full 8-value groups (the `tables` buffer stands in when there are none).
        len * eb >= 16
          ? { buffer: input.buffer, offset: input.byteOffset + start * eb, size: Math.floor((len * eb) / 16) * 16 }
          : tables,
        { buffer: input.buffer, offset: input.byteOffset + start * eb, size: Math.ceil((len * eb) / 4) * 4 },
        { buffer: packed, offset: start / 2, size: Math.ceil(len / 8) * 4 },
        absmaxF32,
        partial,
        stats,
        params([len, start, start / blocksize, start / span]),
      ],
      workgroups: grid2d(Math.ceil(len / span), maxGrid),
      // The chunk's values read; its codes, f32 absmax and (for double quantization) partial sums written.
      bytes: len * eb + Math.ceil(len / 2) + 4 * Math.ceil(len / blocksize) +
        (doubleQuant ? 4 * Math.ceil(len / span) : 0),
    });
  }

  let absmax = absmaxF32;
  const scratch = [partial, stats];
  if (doubleQuant) {
    const per = _pow2AtLeast(Math.ceil(wgs / 256));
    gpu.dispatch({
      kernel: "nf4_quantize",
      entryPoint: "absmax_mean",
      bindings: [partial, stats, params([wgs, per, f32Bits(1 / nb), 0])],
      workgroups: 1,
      bytes: 4 * wgs + 4,
    });
    absmax = gpu.createBuffer(Math.ceil(nb / 4) * 4, "weights", `${label}.absmax codes`);
    // The kernel writes absmax2 while it reads code2: two buffers, copied into `tables` after.
    const absmax2 = gpu.createBuffer(groups * 4, "scratch", `${label}.absmax2`);
    const code2 = gpu.createBuffer(1024, "scratch", `${label}.code2`);
    scratch.push(absmaxF32, absmax2, code2);
    gpu.write(code2, DYNAMIC_CODE_SIGNED);
    gpu.dispatch({
      kernel: "nf4_quantize",
      entryPoint: "double_quant",
      bindings: [absmaxF32, absmax, absmax2, code2, stats, params([nb, 0, 0, 0])],
      workgroups: grid2d(groups, maxGrid),
      bytes: 5 * nb + 4 * groups, // f32 absmax read, 8-bit codes and second-level scales written
    });
    gpu.copy(code2, 0, tables, _CODE2_AT * 4, 1024);
    gpu.copy(absmax2, 0, tables, _ABSMAX2_AT * 4, groups * 4);
  }
  const outputs = [packed, absmax, tables];
  const free = (buffers: GPUBuffer[]) => buffers.forEach((b) => gpu.free(b));
  return {
    cancel: () => free([...scratch, ...outputs]),
    finish: async () => {
      const [bad, offsetBits] = new Uint32Array(await gpu.read(stats, 0, 8));
      free(scratch);
      if (bad !== 0xffffffff) {
        free(outputs);
        const byte = bad * eb;
        const word = new Uint8Array(await gpu.read(input.buffer, input.byteOffset + byte - (byte % 4), 4));
        const value = bytesToF32(word.subarray(byte % 4, (byte % 4) + eb), dtype)[0];
        throw new Error(
          `Tensor "${label}" (shape [${input.shape}], ${dtype}): ${value} at index ${bad}; ` +
            "cannot quantize non-finite values",
        );
      }
      return {
        gpu,
        quantType,
        shape: [...input.shape],
        blocksize,
        doubleQuant,
        packed,
        absmax,
        tables,
        offset: doubleQuant ? new Float32Array(new Uint32Array([offsetBits]).buffer)[0] : 0,
        label,
        dtype,
        codeValues: codeTable(quantType),
      };
    },
  };
}

/**
 * Uploads a host-quantized tensor (e.g. read from a bitsandbytes checkpoint) to the GPU.
 *
 * @param gpu The device.
 * @param host Packed codes and state.
 * @param label Names the tensor.
 * @returns The GPU form (buffers accounted as `weights`).
 *
 * @example
 * ```ts
 * import { requestGpu } from "@qlora/webgpu";
 * import { downloadQuantized, uploadQuantized } from "@qlora/webgpu/kernels";
 * import { quantize4bitRef } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const host = quantize4bitRef(new Float32Array([1, 2, 3]));
 * assert.deepEqual(await downloadQuantized(uploadQuantized(gpu, host, "w")), host);
 * ```
 */
export function uploadQuantized(gpu: Gpu, host: HostQuantized, label: string): QuantizedTensor {
  const s = host.state;
  const make = (data: ArrayBufferView, name: string): GPUBuffer => {
    const bytes = new Uint8Array(Math.max(4, Math.ceil(data.byteLength / 4) * 4));
    bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    const b = gpu.createBuffer(bytes.length, "weights", `${label}.${name}`);
    gpu.write(b, bytes);
    return b;
  };
  const groups = s.nested?.absmax.length ?? 0;
  const tables = _tables(gpu, label, groups);
  const values = new Float32Array(tables.size / 4);
  values.set(s.quantMap);
  if (s.nested) {
    values.set(s.nested.quantMap, _CODE2_AT);
    values.set(s.nested.absmax, _ABSMAX2_AT);
  }
  gpu.write(tables, values);
  return {
    gpu,
    quantType: s.quantType,
    shape: [...s.shape],
    blocksize: s.blocksize,
    doubleQuant: s.nested !== undefined,
    packed: make(host.packed, "packed"),
    absmax: make(s.absmax, "absmax"),
    tables,
    offset: s.nested?.offset ?? 0,
    label,
    dtype: s.dtype,
    codeValues: Float32Array.from(s.quantMap),
  };
}

/**
 * Reads a quantized tensor back to the host, in bitsandbytes' layout (for checkpoints and tests).
 *
 * @param q The GPU form.
 * @returns Packed codes and state.
 *
 * @example
 * ```ts
 * import { quantizeNF4, requestGpu, Tensor } from "@qlora/webgpu";
 * import { downloadQuantized } from "@qlora/webgpu/kernels";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const q = await quantizeNF4(gpu, Tensor.fromArray(gpu, new Float32Array([0.5, -1]), [2]), { doubleQuant: false });
 * const host = await downloadQuantized(q);
 * assert.deepEqual([...host.packed], [0xc0]);
 * assert.deepEqual([...host.state.absmax], [1]);
 * ```
 */
export async function downloadQuantized(q: QuantizedTensor): Promise<HostQuantized> {
  const n = q.shape.reduce((a, b) => a * b, 1);
  const nb = Math.ceil(n / q.blocksize);
  const bytes = async (b: GPUBuffer, count: number) =>
    new Uint8Array(await q.gpu.read(b, 0, Math.ceil(count / 4) * 4), 0, count);
  const base = {
    quantType: q.quantType,
    shape: [...q.shape],
    dtype: q.dtype ?? "f32",
    blocksize: q.blocksize,
    quantMap: await q.gpu.readF32(q.tables, 0, 16),
  };
  const state: QuantState = q.doubleQuant
    ? {
      ...base,
      absmax: await bytes(q.absmax, nb),
      nested: {
        absmax: await q.gpu.readF32(q.tables, _ABSMAX2_AT * 4, Math.ceil(nb / DOUBLE_QUANT_BLOCKSIZE)),
        quantMap: await q.gpu.readF32(q.tables, _CODE2_AT * 4, 256),
        blocksize: DOUBLE_QUANT_BLOCKSIZE,
        offset: q.offset,
      },
    }
    : { ...base, absmax: await q.gpu.readF32(q.absmax, 0, nb) };
  return { packed: await bytes(q.packed, Math.ceil(n / 2)), state };
}

/**
 * Frees the buffers of a quantized tensor.
 *
 * @param q The quantized tensor.
 *
 * @example
 * ```ts
 * import { freeQuantized, requestGpu } from "@qlora/webgpu";
 * import { uploadQuantized } from "@qlora/webgpu/kernels";
 * import { quantize4bitRef } from "@qlora/webgpu/quant";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const q = uploadQuantized(gpu, quantize4bitRef(new Float32Array(64)), "w");
 * freeQuantized(q);
 * assert.equal(gpu.budget.report().byClass.weights, 0);
 * ```
 */
export function freeQuantized(q: QuantizedTensor): void {
  for (const b of [q.packed, q.absmax, q.tables]) q.gpu.free(b);
}

// Element offsets of code2 and absmax2 in `QuantizedTensor.tables` (CODE2_AT, ABSMAX2_AT in
// wgsl/_quant_tables.wgsl).
const _CODE2_AT = 16;
const _ABSMAX2_AT = 272;

/** The tables buffer of a quantized tensor with `groups` absmax2 values (0 without double quantization). */
function _tables(gpu: Gpu, label: string, groups: number): GPUBuffer {
  return gpu.createBuffer((groups > 0 ? _ABSMAX2_AT + groups : 16) * 4, "weights", `${label}.tables`);
}

function _pow2AtLeast(v: number): number {
  let p = 1;
  while (p < v) p *= 2;
  return p;
}
