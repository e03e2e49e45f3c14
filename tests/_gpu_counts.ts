// Counts the WebGPU calls that cost per training step: compute dispatches, queue submits, and host waits
// (`mapAsync`, `onSubmittedWorkDone`: Deno polls each every ~10 ms, so each costs at least that on any GPU).
// Counts depend only on the code path, not on the adapter's speed, so tests can assert them exactly.

/** Calls counted since {@linkcode countGpuCalls} started (or the last {@linkcode GpuCounter.take}). */
export interface GpuCounts {
  dispatches: number;
  submits: number;
  waits: number;
  /** Dispatches by the label of the pipeline they ran (the kernel, its entry point and constants). */
  byKernel: Map<string, number>;
}

/** A running count; `stop` puts the prototypes back. */
export interface GpuCounter {
  /** The counts so far, reset to zero. */
  take(): GpuCounts;
  /** Stops counting. */
  stop(): void;
}

function zero(): GpuCounts {
  return { dispatches: 0, submits: 0, waits: 0, byKernel: new Map() };
}

/** Starts counting calls on every device (wraps the prototypes until `stop`). */
export function countGpuCalls(): GpuCounter {
  let c = zero();
  // The pipeline's label names the kernel (`Gpu` labels each pipeline); a pass runs many, so track the one set last.
  const labels = new WeakMap<GPUComputePassEncoder, string>();
  const pass = GPUComputePassEncoder.prototype;
  const queue = GPUQueue.prototype;
  const buffer = GPUBuffer.prototype;
  const saved = {
    setPipeline: pass.setPipeline,
    dispatch: pass.dispatchWorkgroups,
    submit: queue.submit,
    done: queue.onSubmittedWorkDone,
    map: buffer.mapAsync,
  };
  pass.setPipeline = function (this: GPUComputePassEncoder, p: GPUComputePipeline) {
    labels.set(this, p.label);
    return saved.setPipeline.call(this, p);
  };
  pass.dispatchWorkgroups = function (this: GPUComputePassEncoder, x: number, y?: number, z?: number) {
    c.dispatches++;
    const k = labels.get(this) ?? "?";
    c.byKernel.set(k, (c.byKernel.get(k) ?? 0) + 1);
    return saved.dispatch.call(this, x, y, z);
  };
  queue.submit = function (this: GPUQueue, b: GPUCommandBuffer[]) {
    c.submits++;
    return saved.submit.call(this, b);
  };
  queue.onSubmittedWorkDone = function (this: GPUQueue) {
    c.waits++;
    return saved.done.call(this);
  };
  buffer.mapAsync = function (this: GPUBuffer, mode: GPUMapModeFlags, offset?: number, size?: number) {
    c.waits++;
    return saved.map.call(this, mode, offset, size);
  };
  return {
    take() {
      const out = c;
      c = zero();
      return out;
    },
    stop() {
      pass.setPipeline = saved.setPipeline;
      pass.dispatchWorkgroups = saved.dispatch;
      queue.submit = saved.submit;
      queue.onSubmittedWorkDone = saved.done;
      buffer.mapAsync = saved.map;
    },
  };
}
