// What every kernel wrapper in this folder shares (not exported from mod.ts): argument checks that run before any
// dispatch, so a bad call fails with an error naming the tensor, its shape and dtype, and what was expected
// (`<what> "<label>" is [shape] dtype, expected …`) instead of a GPU validation error; workgroup grids and tiles;
// row ranges for tensors larger than one storage binding (`gpu.maxBindingBytes`); uniform packing; the work a
// dispatch states for the profiler.
//
// The profiler's figures (`Dispatch.bytes`, `Dispatch.flops`), the conventions every wrapper follows: bytes are what
// a dispatch must move at least, each operand element it reads counted once and each it writes once (an output
// added into counts as read and written; re-reads that caches serve, e.g. a weight re-read per row tile, are not
// counted); FLOPs are the products' multiply-adds at 2 each (productFlops), leaving out the O(outputs) work
// around them (bias, scale, accumulation, dequantization, softmax exponentials). Memory-bound kernels state bytes
// only.

import { type Gpu, grid2d } from "../gpu/device.ts";
import { numel, Tensor } from "../gpu/tensor.ts";
import type { QuantizedTensor } from "../quant/quantized_tensor.ts";
import { bitsPerParameter } from "../quant/reference.ts";

/** `<what> "<label>" is [shape] dtype, expected <expected>`: the one error wording of the argument checks. */
function _mismatch(what: string, t: Tensor, expected: string): Error {
  return new Error(`${what} "${t.label}" is [${t.shape}] ${t.dtype}, expected ${expected}`);
}

/** Element types of a frozen weight held as its checkpoint stores it, by `_stored_float.wgsl`'s format code. */
const _STORED_FORMAT: Readonly<Record<string, number>> = { f32: 0, bf16: 1, f16: 2 };

/**
 * The `_stored_float.wgsl` format code of frozen weight `t` (f32, bf16 or f16); throws naming it otherwise, or when
 * a 16-bit tensor has an odd element count (it is bound as whole u32 words).
 */
export function storedFormat(t: Tensor, what: string): number {
  const fmt = _STORED_FORMAT[t.dtype];
  if (fmt === undefined || (fmt > 0 && t.size % 2 !== 0)) {
    throw _mismatch(what, t, "f32, or bf16/f16 with an even element count");
  }
  return fmt;
}

/** Throws unless `t` is f32 with `shape` (`-1` matches any size). */
export function expectF32(t: Tensor, shape: readonly number[], what: string): void {
  const ok = t.dtype === "f32" && t.shape.length === shape.length && shape.every((d, i) => d < 0 || d === t.shape[i]);
  if (!ok) throw _mismatch(what, t, `[${shape.map((d) => (d < 0 ? "*" : d))}] f32`);
}

/** Throws unless `t` has exactly `size` elements of `dtype` (any shape). */
export function expectSize(t: Tensor, what: string, size: number, dtype = "f32"): void {
  if (t.dtype !== dtype || t.size !== size) throw _mismatch(what, t, `${size} elements of ${dtype}`);
}

/** Throws unless `t` is f32 with a positive multiple of `cols` elements; returns `[rows, cols]`. */
export function expectRows(t: Tensor, what: string, cols: number): [number, number] {
  if (t.dtype !== "f32" || cols <= 0 || t.size % cols !== 0 || t.size === 0) {
    throw _mismatch(what, t, `a non-empty multiple of ${cols} columns of f32`);
  }
  return [t.size / cols, cols];
}

/** Checks a quantized weight is a 2-D `[N, K]` matrix with a power-of-two block size (the kernels shift by it). */
export function quantizedMatrixShape(w: QuantizedTensor): [number, number] {
  if (w.shape.length !== 2) throw new Error(`Quantized weight "${w.label}" is [${w.shape}], expected [N, K]`);
  if (!Number.isInteger(Math.log2(w.blocksize))) {
    throw new Error(`Quantized weight "${w.label}" has block size ${w.blocksize}, expected a power of two`);
  }
  return [w.shape[0], w.shape[1]];
}

/** `out` after checking it has `shape`'s element count (f32), or a new activations tensor of `shape`. */
export function output(gpu: Gpu, out: Tensor | undefined, shape: readonly number[], label: string): Tensor {
  if (!out) return Tensor.empty(gpu, shape, { label });
  expectSize(out, `Output ${label}`, numel(shape));
  return out;
}

/** Throws if a tensor is bound more than once with write access (WebGPU forbids aliasing a writable binding). */
export function distinct(op: string, ...tensors: Tensor[]): void {
  const seen = new Set<GPUBuffer>();
  for (const t of tensors) {
    if (seen.has(t.buffer)) {
      // WebGPU forbids a buffer bound for writing and for reading in one dispatch, even at disjoint ranges (views).
      throw new Error(`${op}: tensor "${t.label}" shares a buffer with another operand; outputs cannot alias inputs`);
    }
    seen.add(t.buffer);
  }
}

/**
 * Throws unless every `[name, bytes]` operand fits one storage binding (`gpu.maxBindingBytes`): for operands a
 * wrapper binds whole; `op` says which ones it splits.
 */
export function checkBindingSize(gpu: Gpu, op: string, operands: [string, number][]): void {
  for (const [name, bytes] of operands) {
    if (bytes > gpu.maxBindingBytes) {
      throw new Error(
        `${op}: ${name} takes ${bytes} bytes, over the storage binding limit of ${gpu.maxBindingBytes} bytes ` +
          "(only the row-split operands may be larger)",
      );
    }
  }
}

/** Throws unless tensor `t`, bound whole, fits one storage binding. */
export function fitsBinding(gpu: Gpu, t: Tensor, what: string): void {
  checkBindingSize(gpu, `${what} "${t.label}" [${t.shape}] is bound whole`, [["it", t.byteLength]]);
}

/** Uniform data: `u` as u32 words, then `f` as f32 words (the WGSL params structs list u32 fields first). */
export function params(u: readonly number[], f: readonly number[] = []): Uint32Array {
  const words = new Uint32Array(u.length + f.length);
  words.set(u);
  new Float32Array(words.buffer, u.length * 4, f.length).set(f);
  return words;
}

/** The bits of `v` rounded to f32, as a u32 word: for an f32 field among u32 fields of a params struct. */
export function f32Bits(v: number): number {
  return new Uint32Array(new Float32Array([v]).buffer)[0];
}

/** FLOPs of an `[m, k]·[k, n]` product: `2·m·n·k` (a multiply-add is 2). */
export function productFlops(m: number, n: number, k: number): number {
  return 2 * m * n * k;
}

/**
 * Bytes of `n` values of a 4-bit quantized tensor as stored: codes and scales (second-level ones included), as
 * `bitsPerParameter` counts them.
 */
export function quantizedBytes(q: QuantizedTensor, n: number): number {
  return Math.round(bitsPerParameter(q.blocksize, q.doubleQuant, n) * n / 8);
}

/** Workgroups for `count` workgroups as a grid2d within the device's per-dimension limit. */
export function grid(gpu: Gpu, count: number): [number, number] {
  return grid2d(count, gpu.limits.maxComputeWorkgroupsPerDimension);
}

/** Workgroups for one invocation per element of `n`, `wg` invocations per workgroup. */
export function elementGrid(gpu: Gpu, n: number, wg = 256): [number, number] {
  return grid(gpu, Math.ceil(n / wg));
}

/**
 * Rows per tile of the tiled matrix kernels: 16 for up to 16 rows, else 64. Two sizes only: every variant is a
 * pipeline to compile (slow on GL drivers, which compile on first use).
 */
export function matrixTile(rows: number): number {
  return rows <= 16 ? 16 : 64;
}

/**
 * Splits `rows` rows into ranges `[r0, r1)` such that each row-major operand's range (`rowBytes[i]` bytes per row)
 * fits `maxBytes` (default `gpu.maxBindingBytes`), and every range's byte offset in every operand is a multiple of
 * the device's `minStorageBufferOffsetAlignment`. One range `[0, rows)` when everything fits.
 *
 * @throws {Error} Naming `op`, if not even one aligned group of rows fits a binding.
 */
export function rowRanges(
  gpu: Gpu,
  rows: number,
  rowBytes: readonly number[],
  op: string,
): [number, number][] {
  return splitRows(rows, rowBytes, gpu.maxBindingBytes, gpu.limits.minStorageBufferOffsetAlignment, op);
}

/** {@linkcode rowRanges} for an explicit limit and alignment (a power of two). */
export function splitRows(
  rows: number,
  rowBytes: readonly number[],
  maxBytes: number,
  align: number,
  op: string,
): [number, number][] {
  const widest = Math.max(...rowBytes);
  if (rows * widest <= maxBytes) return [[0, rows]];
  const gcd = (a: number, b: number): number => b === 0 ? a : gcd(b, a % b);
  // Rows per range must make r0 · rowBytes[i] a multiple of align for every operand: the lcm of the granularities.
  const step = rowBytes.reduce((s, b) => {
    const g = align / gcd(b, align);
    return (s * g) / gcd(s, g);
  }, 1);
  const per = Math.floor(Math.floor(maxBytes / widest) / step) * step;
  if (per === 0) {
    throw new Error(
      `${op}: rows of ${widest} bytes cannot be split into ${step}-row groups within the ${maxBytes}-byte ` +
        `storage binding limit`,
    );
  }
  const out: [number, number][] = [];
  for (let r = 0; r < rows; r += per) out.push([r, Math.min(r + per, rows)]);
  return out;
}

/** Binds rows `[r0, r1)` of a row-major tensor with `rowBytes`-byte rows: the whole buffer when that is all of it. */
export function rowBinding(t: Tensor, rowBytes: number, range: [number, number]): GPUBuffer | GPUBufferBinding {
  const [r0, r1] = range;
  if (r0 === 0 && r1 * rowBytes === t.byteLength) return t.binding;
  return { buffer: t.buffer, offset: t.byteOffset + r0 * rowBytes, size: (r1 - r0) * rowBytes };
}

/**
 * Elements per chunk of a flat tensor split by whole `granule`s (e.g. quantization blocks), such that every chunked
 * binding's offset is aligned and its size (`bytesPerElem` per element, packed codes half a byte) within
 * `gpu.maxBindingBytes`.
 */
export function chunkElems(gpu: Gpu, bytesPerElem: number, granule: number, label: string): number {
  const limit = gpu.maxBindingBytes;
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  // All powers of two: the largest is their least common multiple. Packed codes are half a byte per value.
  const g = Math.max(granule, 2 * align, Math.ceil(align / bytesPerElem));
  const c = Math.floor(limit / bytesPerElem / g) * g;
  if (c < g) throw new Error(`Tensor "${label}": binding limit ${limit} bytes is below one chunk of ${g} values`);
  return c;
}

/** Throws unless each buffer of tensor `label` that a chunked kernel binds whole fits one storage binding. */
export function checkWhole(gpu: Gpu, label: string, ...buffers: GPUBuffer[]): void {
  checkBindingSize(gpu, `Tensor "${label}" (bound whole)`, buffers.map((b) => [b.label, b.size]));
}
