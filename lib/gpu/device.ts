/**
 * The device: the pipeline cache, batched dispatch, pooled buffers, uploads/readback, and error reporting that names
 * the kernel (adapter and device acquisition are in `adapter.ts`).
 *
 * @module
 */

import { MemoryBudget, type MemoryClass } from "./budget.ts";
import { GpuCounters, type GpuStats } from "./stats.ts";
import { BindCache, UNIFORM_ARENA_BYTES } from "./bind_cache.ts";
import { type Profile, Profiler } from "./profiler.ts";
import { WGSL } from "./_wgsl.ts";
import { type Dispatch, GpuError } from "./dispatch.ts";
import { acquireDevice, type GpuFeatures, type RequestGpuOptions } from "./adapter.ts";

export { type Binding, type Dispatch, GpuError, grid2d } from "./dispatch.ts";
export type { GpuFeatures, RequestGpuOptions } from "./adapter.ts";

const SUBMIT_EVERY = 64; // recorded commands after which a dispatch submits them

/**
 * A WebGPU device with the toolkit's plumbing. Get one with {@linkcode requestGpu}.
 *
 * Dispatches and copies are recorded into a pending command encoder and submitted together at the next
 * {@linkcode Gpu.flush}, {@linkcode Gpu.read} or {@linkcode Gpu.sync}; errors from any of them are thrown there.
 */
export class Gpu {
  /** The WebGPU device. */
  readonly device: GPUDevice;
  /** Adapter description, e.g. `"llvmpipe (LLVM 15.0.6, 256 bits)"` or `"NVIDIA H100"`. */
  readonly adapterName: string;
  /** Optional features in use. */
  readonly features: GpuFeatures;
  /** The device's limits. */
  readonly limits: GPUSupportedLimits;
  /** Every allocation goes through this budget. */
  readonly budget: MemoryBudget;
  /**
   * Largest storage binding the kernels make: the device's `maxStorageBufferBindingSize` unless
   * {@linkcode RequestGpuOptions.maxBindingBytes} lowered it. Larger tensors are bound in row ranges.
   */
  readonly maxBindingBytes: number;

  #modules = new Map<string, GPUShaderModule>();
  #pipelines = new Map<string, { pipeline: GPUComputePipeline; id: number }>();
  #encoder: GPUCommandEncoder | null = null;
  // Consecutive dispatches share a pass (each is still its own usage scope); a copy, clear or submit ends it.
  #pass: GPUComputePassEncoder | null = null;
  #passPipeline: GPUComputePipeline | null = null;
  // Clears of reused buffers: a command buffer submitted just before #encoder's, so they split no pass (nothing
  // recorded since the buffer's last submit uses it).
  #clears: GPUCommandEncoder | null = null;
  #kernelsPending: string[] = [];
  #errors: string[] = [];
  #pendingChecks: Promise<void>[] = [];
  #bindCache: BindCache;
  #readStaging: GPUBuffer | null = null;
  #counters: GpuCounters;
  #profiler: { profiler: Profiler; t0: number } | null = null;

  /** Use {@linkcode requestGpu}. */
  constructor(
    device: GPUDevice,
    adapterName: string,
    features: GpuFeatures,
    budget: MemoryBudget,
    maxBindingBytes: number = device.limits.maxStorageBufferBindingSize,
  ) {
    this.device = device;
    this.adapterName = adapterName;
    this.features = features;
    this.limits = device.limits;
    this.budget = budget;
    if (!(maxBindingBytes > 0)) throw new Error(`maxBindingBytes ${maxBindingBytes} is not a positive byte count`);
    this.maxBindingBytes = Math.min(maxBindingBytes, device.limits.maxStorageBufferBindingSize);
    this.#counters = GpuCounters.instrument(device);
    device.addEventListener("uncapturederror", (e) => {
      this.#errors.push((e as GPUUncapturedErrorEvent).error.message);
    });
    device.lost.then((info) => {
      if (info.reason !== "destroyed") this.#errors.push(`GPU device lost: ${info.message}`);
    });
    const uniforms = budget.createBuffer({
      size: UNIFORM_ARENA_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      class: "scratch",
      label: "uniform arena",
    });
    this.#bindCache = new BindCache(device, uniforms, Math.max(256, device.limits.minUniformBufferOffsetAlignment));
    budget.onDestroy = (b) => this.#bindCache.forget(b);
  }

  /** The WGSL source of a kernel in `wgsl/` (embedded, so no file access is needed). */
  shaderSource(kernel: string): string {
    const src = WGSL[kernel];
    if (src === undefined) throw new Error(`Unknown kernel "${kernel}": no wgsl/${kernel}.wgsl`);
    return src;
  }

  /**
   * The compute pipeline for a kernel, entry point and constants; compiled once, then cached.
   * A compile error is thrown at the next sync point, naming the kernel.
   */
  pipeline(kernel: string, entryPoint = "main", constants: Record<string, number> = {}): GPUComputePipeline {
    return this.#pipeline(kernel, entryPoint, constants).pipeline;
  }

  #pipeline(kernel: string, entryPoint = "main", constants?: Record<string, number>) {
    const key = constants ? `${kernel}:${entryPoint}:${JSON.stringify(constants)}` : `${kernel}:${entryPoint}:{}`;
    const cached = this.#pipelines.get(key);
    if (cached) return cached;
    constants ??= {};
    let module = this.#modules.get(kernel);
    this.device.pushErrorScope("validation");
    if (!module) {
      module = this.device.createShaderModule({ code: this.shaderSource(kernel), label: kernel });
      this.#modules.set(kernel, module);
    }
    const p = this.device.createComputePipeline({
      label: key,
      layout: "auto",
      compute: { module, entryPoint, constants },
    });
    this.#check(this.device.popErrorScope(), `compiling kernel ${key}`);
    this.#pipelines.set(key, { pipeline: p, id: this.#pipelines.size });
    return this.#pipelines.get(key)!;
  }

  /**
   * An accounted, zero-filled buffer. Activations and scratch come from the budget's pool when it has a freed
   * buffer of the same size and usage (cleared on the GPU before any recorded work, unless `zero` is false), and
   * go back to it when freed; other classes are created new.
   *
   * @param size Bytes (rounded up to a multiple of 4).
   * @param cls Memory class.
   * @param label Names the buffer in errors.
   * @param usage Extra usage flags beyond `STORAGE | COPY_SRC | COPY_DST`.
   * @param zero False: the caller overwrites every byte before reading any, so a reused buffer is not cleared.
   *
   * @example A freed activation buffer is reused, cleared
   * ```ts
   * import { requestGpu } from "@qlora/webgpu";
   * import assert from "node:assert/strict";
   * const gpu = await requestGpu();
   * const a = gpu.createBuffer(8, "activations", "a");
   * gpu.write(a, new Float32Array([1, 2]));
   * gpu.free(a);
   * const b = gpu.createBuffer(8, "activations", "b");
   * assert.equal(b, a);
   * assert.deepEqual([...await gpu.readF32(b)], [0, 0]);
   * ```
   */
  createBuffer(size: number, cls: MemoryClass, label: string, usage = 0, zero = true): GPUBuffer {
    const desc = {
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST | usage,
      class: cls,
      label,
      pooled: cls === "activations" || cls === "scratch",
    };
    const reused = desc.pooled ? this.budget.reuse(desc) : null;
    if (reused) {
      if (zero) {
        (this.#clears ??= this.device.createCommandEncoder({ label: "clears" })).clearBuffer(reused);
        this.#pending();
      }
      return reused;
    }
    this.device.pushErrorScope("out-of-memory");
    const b = this.budget.createBuffer(desc);
    this.#check(this.device.popErrorScope(), `allocating ${size} bytes for "${label}"`);
    return b;
  }

  /**
   * Records a compute dispatch (submitted at the next flush).
   *
   * @example Add one buffer into another
   * ```ts
   * import { requestGpu } from "@qlora/webgpu";
   * import assert from "node:assert/strict";
   * const gpu = await requestGpu();
   * const acc = gpu.createBuffer(8, "scratch", "acc");
   * const x = gpu.createBuffer(8, "scratch", "x");
   * gpu.write(x, new Float32Array([1, 2]));
   * // residual_add's uniforms: element count (u32), then alpha (f32).
   * const params = new Uint32Array([2, 0]);
   * new Float32Array(params.buffer)[1] = 3;
   * gpu.dispatch({ kernel: "residual_add", bindings: [acc, x, params], workgroups: 1 });
   * assert.deepEqual([...await gpu.readF32(acc)], [3, 6]);
   * ```
   */
  dispatch(d: Dispatch): void {
    const t0 = performance.now();
    // Errors name the kernel file, and the entry point of a file with several (e.g. `rms_norm.backward`).
    const name = d.entryPoint ? `${d.kernel}.${d.entryPoint}` : d.kernel;
    const [x, y = 1, z = 1] = typeof d.workgroups === "number" ? [d.workgroups] : d.workgroups;
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) {
      throw new GpuError(`Kernel ${name}: workgroup count ${x}×${y}×${z} exceeds ${max} per dimension`);
    }
    const { pipeline, id } = this.#pipeline(d.kernel, d.entryPoint, d.constants);
    let bindGroup = this.#bindCache.bindGroup(pipeline, id, d.bindings, name);
    if (!bindGroup) {
      // The uniform arena is full: submit what uses it, then start it over.
      this.flush();
      this.#bindCache.reset();
      bindGroup = this.#bindCache.bindGroup(pipeline, id, d.bindings, name)!;
    }
    const s = this.#counters.now;
    const stamps = this.#profiler?.profiler.timestampWrites(name, d.bytes ?? 0, d.flops ?? 0);
    if (stamps) this.#endPass();
    if (!this.#pass) {
      this.#pass = this.#pending().beginComputePass(stamps ? { timestampWrites: stamps } : undefined);
      this.#passPipeline = null;
      s.passes++;
    }
    if (this.#passPipeline !== pipeline) this.#pass.setPipeline(this.#passPipeline = pipeline);
    this.#pass.setBindGroup(0, bindGroup);
    this.#pass.dispatchWorkgroups(x, y, z);
    if (stamps) this.#endPass();
    this.#kernelsPending.push(name);
    s.dispatches++;
    s.recordMs += performance.now() - t0;
    if (this.#kernelsPending.length >= SUBMIT_EVERY) this.flush(); // the GPU starts while the host records on
  }

  /** Host-side counters since the last {@linkcode Gpu.resetStats} or profile (see {@linkcode Gpu.profile}). */
  stats(): GpuStats {
    return this.#counters.read();
  }

  /** Sets the counters of {@linkcode Gpu.stats} back to zero (e.g. at the start of a step). */
  resetStats(): void {
    this.#counters.reset();
  }

  /**
   * Profiles `steps` steps run by `fn`: per-kernel GPU time (timestamp queries, each dispatch in its own timed
   * pass; "n/a" without `timestamp-query`), share, GB/s or GFLOP/s where dispatches state bytes or FLOPs, and the
   * host-side counters, all per step. Resets {@linkcode Gpu.stats}.
   *
   * @param fn Runs the steps (it may await).
   * @param steps Steps `fn` runs, to divide by.
   * @returns The profile (print it with {@linkcode formatProfile}).
   *
   * @example
   * ```ts
   * import { requestGpu } from "@qlora/webgpu";
   * import assert from "node:assert/strict";
   * const gpu = await requestGpu();
   * const acc = gpu.createBuffer(8, "scratch", "acc");
   * const x = gpu.createBuffer(8, "scratch", "x");
   * const p = await gpu.profile(() => {
   *   gpu.dispatch({ kernel: "residual_add", bindings: [acc, x, new Uint32Array([2, 0])], workgroups: 1 });
   * });
   * assert.deepEqual(p.kernels.map((k) => [k.kernel, k.calls]), [["residual_add", 1]]);
   * assert.deepEqual([p.stats.dispatches, p.stats.submits, p.stats.waits], [1, 1, 1]);
   * ```
   */
  async profile(fn: () => void | Promise<void>, steps = 1): Promise<Profile> {
    this.startProfile();
    try {
      await fn();
    } catch (e) {
      await this.stopProfile(steps).catch(() => {}); // fn's error wins
      throw e;
    }
    return await this.stopProfile(steps);
  }

  /** Starts profiling (see {@linkcode Gpu.profile}); end with {@linkcode Gpu.stopProfile}. */
  startProfile(): void {
    if (this.#profiler) throw new Error("Gpu.startProfile: a profile is already running");
    this.flush();
    this.#counters.reset();
    this.#profiler = { profiler: new Profiler(this.device, this.features.timestampQuery), t0: performance.now() };
  }

  /**
   * Ends the profile begun by {@linkcode Gpu.startProfile}, after the recorded work finishes.
   *
   * @param steps Steps run since the start, to divide by.
   */
  async stopProfile(steps = 1): Promise<Profile> {
    const run = this.#profiler;
    if (!run) throw new Error("Gpu.stopProfile: no profile is running");
    this.#profiler = null;
    await this.sync();
    return await run.profiler.report(this, steps, performance.now() - run.t0, this.stats());
  }

  /** Records a buffer-to-buffer copy (ordered with dispatches). */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    const t0 = performance.now();
    this.#endPass();
    this.#pending().copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
    this.#kernelsPending.push("copy");
    this.#counters.now.recordMs += performance.now() - t0;
  }

  /**
   * Records zeroing a buffer, or `size` bytes of it from `offset` (ordered with dispatches; no host upload).
   *
   * @param buffer The buffer (needs `COPY_DST`, as {@linkcode Gpu.createBuffer} gives).
   * @param offset Byte offset (multiple of 4).
   * @param size Byte count (multiple of 4); default: to the end.
   *
   * @example
   * ```ts
   * import { requestGpu } from "@qlora/webgpu";
   * import assert from "node:assert/strict";
   * const gpu = await requestGpu();
   * const buf = gpu.createBuffer(12, "scratch", "cleared");
   * gpu.write(buf, new Float32Array([1, 2, 3]));
   * gpu.clear(buf, 4, 4);
   * assert.deepEqual([...await gpu.readF32(buf)], [1, 0, 3]);
   * ```
   */
  clear(buffer: GPUBuffer, offset = 0, size?: number): void {
    const t0 = performance.now();
    this.#endPass();
    this.#pending().clearBuffer(buffer, offset, size);
    this.#kernelsPending.push("clear");
    this.#counters.now.recordMs += performance.now() - t0;
  }

  /**
   * Writes host data into a buffer, ordered after everything recorded so far.
   *
   * @param buffer Destination.
   * @param data Bytes to write (length a multiple of 4).
   * @param offset Byte offset in the destination.
   */
  write(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    this.flush();
    this.device.queue.writeBuffer(buffer, offset, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
  }

  /** Submits everything recorded so far (without waiting). */
  flush(): void {
    this.#throwErrors();
    if (!this.#encoder) return;
    const t0 = performance.now();
    this.#endPass();
    const enc = this.#encoder;
    const kernels = this.#kernelsPending.join(", ");
    this.#encoder = null;
    this.#kernelsPending = [];
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
    this.#bindCache.upload();
    this.device.queue.submit(this.#clears ? [this.#clears.finish(), enc.finish()] : [enc.finish()]);
    this.#clears = null;
    this.#check(this.device.popErrorScope(), `running kernels [${kernels}]`);
    this.#check(this.device.popErrorScope(), `running kernels [${kernels}]`);
    // WebGPU lets a buffer used by submitted work be destroyed (the work still completes) or reused (after it).
    this.budget.submitted();
    this.#counters.now.submitMs += performance.now() - t0;
  }

  /** Submits pending work, waits for the GPU to finish it, and throws any GPU error raised meanwhile. */
  async sync(): Promise<void> {
    this.flush();
    const t0 = performance.now();
    await this.device.queue.onSubmittedWorkDone();
    await Promise.all(this.#pendingChecks);
    this.#counters.now.waitMs += performance.now() - t0;
    this.#pendingChecks = [];
    this.#throwErrors();
  }

  /**
   * Reads a buffer (or a byte range of it) back to the host, after all recorded work.
   *
   * @param buffer The buffer (needs `COPY_SRC`, as {@linkcode Gpu.createBuffer} gives).
   * @param offset Byte offset (multiple of 4).
   * @param size Byte count (multiple of 4); default: to the end.
   * @returns A fresh ArrayBuffer.
   */
  async read(buffer: GPUBuffer, offset = 0, size?: number): Promise<ArrayBuffer> {
    size ??= buffer.size - offset;
    const staging = this.#staging(size);
    this.copy(buffer, offset, staging, 0, size);
    await this.sync();
    await staging.mapAsync(GPUMapMode.READ, 0, size);
    const out = staging.getMappedRange(0, size).slice(0);
    staging.unmap();
    return out;
  }

  /** Reads a buffer as float32 values. */
  async readF32(buffer: GPUBuffer, offset = 0, count?: number): Promise<Float32Array> {
    return new Float32Array(await this.read(buffer, offset, count === undefined ? undefined : count * 4));
  }

  /**
   * Frees a buffer made by {@linkcode Gpu.createBuffer}: an activation or scratch buffer goes to the budget's pool,
   * any other's bytes leave the budget. While recorded work may still use it, it is reused or destroyed only
   * after the next submit.
   */
  free(buffer: GPUBuffer): void {
    this.budget.free(buffer, this.#encoder !== null);
  }

  /** Releases the device and every cached object. */
  destroy(): void {
    this.#pipelines.clear();
    this.#modules.clear();
    this.device.destroy();
  }

  #pending(): GPUCommandEncoder {
    this.#encoder ??= this.device.createCommandEncoder();
    return this.#encoder;
  }

  #endPass(): void {
    this.#pass?.end();
    this.#pass = null;
  }

  #staging(size: number): GPUBuffer {
    if (!this.#readStaging || this.#readStaging.size < size) {
      if (this.#readStaging) this.budget.free(this.#readStaging);
      // Mapping buffers are host memory: the budget reports them as staging, not against the limit.
      this.#readStaging = this.budget.createStagingBuffer({
        size: Math.max(size, 1 << 16),
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        label: "readback staging",
      });
    }
    return this.#readStaging;
  }

  #check(scope: Promise<GPUError | null>, what: string): void {
    this.#pendingChecks.push(scope.then((e) => {
      if (e) this.#errors.push(`${what}: ${e.message}`);
    }));
  }

  #throwErrors(): void {
    if (this.#errors.length === 0) return;
    const msg = this.#errors.join("\n");
    this.#errors = [];
    throw new GpuError(msg);
  }
}

/**
 * Acquires the adapter and a device with the limits the kernels need (largest storage bindings and buffers the
 * adapter allows), detects optional features, and sets up the memory budget.
 *
 * @param options Memory budget, power preference, features to leave off, binding limit.
 * @returns A ready {@linkcode Gpu}.
 * @throws {GpuError} If there is no WebGPU adapter, with what to install.
 *
 * @example
 * ```ts
 * import { requestGpu } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu({ gpuMemory: "256MiB" });
 * assert.equal(gpu.budget.limit, 256 * 2 ** 20);
 * assert.equal(gpu.maxBindingBytes, gpu.limits.maxStorageBufferBindingSize);
 * assert.ok(gpu.adapterName.length > 0);
 * ```
 */
export async function requestGpu(options: RequestGpuOptions = {}): Promise<Gpu> {
  const { device, name, features } = await acquireDevice(options);
  return new Gpu(device, name, features, new MemoryBudget(device, options.gpuMemory), options.maxBindingBytes);
}
