/**
 * Host-side counters of a device: what the CPU asks of WebGPU per step (dispatches, submits, host waits, buffers
 * and bind groups created, `writeBuffer`s) and the CPU time spent recording work and waiting for it.
 *
 * @module
 */

/** Counters since the last {@linkcode GpuCounters.reset}, from {@linkcode Gpu.stats}. */
export interface GpuStats {
  /** Compute dispatches recorded. */
  dispatches: number;
  /** Compute passes begun (several consecutive dispatches share one). */
  passes: number;
  /** `queue.submit` calls. */
  submits: number;
  /** Host waits: `mapAsync` and `onSubmittedWorkDone` calls. */
  waits: number;
  /** `device.createBuffer` calls (accounted, staging and query buffers alike). */
  buffersCreated: number;
  /** `device.createBindGroup` calls. */
  bindGroupsCreated: number;
  /** `queue.writeBuffer` calls. */
  writeBuffers: number;
  /** CPU milliseconds spent recording dispatches, copies and clears (in `Gpu`). */
  recordMs: number;
  /** Milliseconds in `Gpu.flush` finishing and submitting command buffers (a software adapter may run them here). */
  submitMs: number;
  /**
   * Milliseconds the host waited: in `Gpu.sync` (the GPU finishing, error checks included) and from each
   * `mapAsync` call to its resolution (pager transfers that overlap count twice).
   */
  waitMs: number;
}

function _zero(): GpuStats {
  return {
    dispatches: 0,
    passes: 0,
    submits: 0,
    waits: 0,
    buffersCreated: 0,
    bindGroupsCreated: 0,
    writeBuffers: 0,
    recordMs: 0,
    submitMs: 0,
    waitMs: 0,
  };
}

/**
 * Counts what one device is asked to do. {@linkcode GpuCounters.instrument} wraps the device's own
 * `createBuffer`, `createBindGroup` and queue methods (and `mapAsync` of the buffers it creates), so every caller
 * is counted, the pager included; `Gpu` adds dispatches, passes and recording time itself.
 *
 * @example
 * ```ts
 * import { GpuCounters } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * const device = await (await navigator.gpu.requestAdapter())!.requestDevice();
 * const counters = GpuCounters.instrument(device);
 * const b = device.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_DST });
 * device.queue.writeBuffer(b, 0, new Uint8Array(16));
 * await device.queue.onSubmittedWorkDone();
 * const s = counters.read();
 * assert.deepEqual([s.buffersCreated, s.writeBuffers, s.waits], [1, 1, 1]);
 * counters.reset();
 * assert.equal(counters.read().writeBuffers, 0);
 * ```
 */
export class GpuCounters {
  /** The live counters (mutated in place by the wrappers and by `Gpu`). */
  readonly now: GpuStats = _zero();

  /** Use {@linkcode GpuCounters.instrument}. */
  private constructor() {}

  /**
   * Wraps `device`'s methods to count into a new `GpuCounters`.
   *
   * @param device The device (its methods are replaced on the instance, not the prototype).
   * @returns The counters.
   */
  static instrument(device: GPUDevice): GpuCounters {
    const c = new GpuCounters();
    const s = c.now;
    const timed = <T>(p: Promise<T>): Promise<T> => {
      s.waits++;
      const t0 = performance.now();
      return p.finally(() => s.waitMs += performance.now() - t0);
    };
    const createBuffer = device.createBuffer.bind(device);
    _replace(device, "createBuffer", (desc: GPUBufferDescriptor) => {
      s.buffersCreated++;
      const b = createBuffer(desc);
      if (desc.usage & (GPUBufferUsage.MAP_READ | GPUBufferUsage.MAP_WRITE)) {
        const mapAsync = b.mapAsync.bind(b);
        _replace(b, "mapAsync", (...a: Parameters<GPUBuffer["mapAsync"]>) => timed(mapAsync(...a)));
      }
      return b;
    });
    const createBindGroup = device.createBindGroup.bind(device);
    _replace(device, "createBindGroup", (desc: GPUBindGroupDescriptor) => {
      s.bindGroupsCreated++;
      return createBindGroup(desc);
    });
    const q = device.queue;
    const submit = q.submit.bind(q);
    _replace(q, "submit", (bufs: GPUCommandBuffer[]) => {
      s.submits++;
      return submit(bufs);
    });
    const writeBuffer = q.writeBuffer.bind(q) as (...a: unknown[]) => void;
    _replace(q, "writeBuffer", (...a: unknown[]) => {
      s.writeBuffers++;
      return writeBuffer(...a);
    });
    const done = q.onSubmittedWorkDone.bind(q);
    _replace(q, "onSubmittedWorkDone", () => {
      s.waits++;
      return done();
    });
    return c;
  }

  /** A copy of the counters. */
  read(): GpuStats {
    return { ...this.now };
  }

  /** Sets every counter back to zero (e.g. at the start of a step). */
  reset(): void {
    Object.assign(this.now, _zero());
  }
}

function _replace(obj: object, name: string, fn: unknown): void {
  Object.defineProperty(obj, name, { value: fn, configurable: true, writable: true });
}
