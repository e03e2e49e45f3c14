// Shared checks and small helpers for the layer-op wrappers in this folder (not exported from mod.ts).
import { type Gpu, grid2d } from "../../gpu/device.ts";
import { numel, Tensor } from "../../gpu/tensor.ts";

/** Throws unless `t` is an f32 tensor whose element count is a positive multiple of `cols`; returns `[rows, cols]`. */
export function _matrix(t: Tensor, name: string, cols: number): [number, number] {
  if (t.dtype !== "f32") throw new Error(`${name} "${t.label}": dtype ${t.dtype}, want f32`);
  if (cols <= 0 || t.size % cols !== 0 || t.size === 0) {
    throw new Error(`${name} "${t.label}": shape [${t.shape}] is not a non-empty multiple of ${cols} columns`);
  }
  return [t.size / cols, cols];
}

/** Throws unless `t` has exactly `size` elements of `dtype`. */
export function _expect(t: Tensor, name: string, size: number, dtype = "f32"): void {
  if (t.dtype !== dtype || t.size !== size) {
    throw new Error(`${name} "${t.label}": shape [${t.shape}] ${t.dtype}, want ${size} elements of ${dtype}`);
  }
}

/** `out` after checking it has `shape`'s element count (f32), or a new activations tensor of `shape`. */
export function _output(gpu: Gpu, out: Tensor | undefined, shape: readonly number[], label: string): Tensor {
  if (!out) return Tensor.empty(gpu, shape, { label });
  _expect(out, `Output ${label}`, numel(shape));
  return out;
}

/** Throws if a tensor is bound more than once with write access (WebGPU forbids aliasing a writable binding). */
export function _distinct(what: string, ...tensors: Tensor[]): void {
  const seen = new Set<GPUBuffer>();
  for (const t of tensors) {
    if (seen.has(t.buffer)) {
      throw new Error(`${what}: tensor "${t.label}" is passed twice; outputs cannot alias inputs`);
    }
    seen.add(t.buffer);
  }
}

/** Throws if a single binding of `bytes` would pass the device's storage binding limit. */
export function _fitsBinding(gpu: Gpu, t: Tensor, name: string): void {
  const max = gpu.limits.maxStorageBufferBindingSize;
  if (t.byteLength > max) {
    throw new Error(`${name} "${t.label}": ${t.byteLength} bytes exceed the ${max}-byte storage binding limit`);
  }
}

/** Uniform data: `u` as u32 words, then `f` as f32 words (WGSL structs here list u32 fields first). */
export function _params(u: number[], f: number[] = []): Uint32Array {
  const words = new Uint32Array(u.length + f.length);
  words.set(u);
  new Float32Array(words.buffer, u.length * 4, f.length).set(f);
  return words;
}

/** Workgroups for one invocation per element with workgroups of `wg` (a grid2d over the device limit). */
export function _elementGrid(gpu: Gpu, n: number, wg = 256): [number, number] {
  return grid2d(Math.ceil(n / wg), gpu.limits.maxComputeWorkgroupsPerDimension);
}
