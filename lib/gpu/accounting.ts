/**
 * An accounting-only device: a stand-in `GPUDevice` whose buffers hold no memory and whose dispatches, copies and
 * uploads do nothing, put behind a real {@linkcode Gpu}. Model construction, a training step and the optimizer run
 * on it unchanged, so every allocation goes through the same budget as on a real adapter: the memory plan of a
 * run is what the run's own code allocates, not a second set of formulas. Kernels change nothing: a read returns
 * what the host wrote into a small buffer (and copies moved), else zeros.
 *
 * The device enforces `maxBufferSize` as WebGPU does (a buffer past it is an error naming the buffer), and keeps a
 * ledger of live bytes by a caller-chosen key (e.g. a finer class than the budget's, from the buffer label), with
 * a snapshot at the peak.
 *
 * @module
 */

import { type BudgetBufferDescriptor, MemoryBudget, type MemoryClass } from "./budget.ts";
import { Gpu, GpuError } from "./device.ts";

/** Adapter limits that size a plan: buffer and binding limits, and the memory to fit in. */
export interface GpuLimits {
  /** `maxBufferSize`: the largest single buffer. */
  maxBufferSize: number;
  /** `maxStorageBufferBindingSize`: the largest storage binding (larger tensors are bound in ranges). */
  maxStorageBufferBindingSize: number;
  /** Device memory in bytes, or null when unknown (WebGPU cannot report it). */
  memory: number | null;
}

const GIB = 2 ** 30;
/** Vulkan and D3D12 drivers of NVIDIA cards: 4 GiB buffers, bindings just under 2 GiB (Dawn's and wgpu's caps). */
const NVIDIA = { maxBufferSize: 4 * GIB, maxStorageBufferBindingSize: 2 * GIB - 4 };

/**
 * Limits of common GPUs, for planning a run on a machine without them (`deno task plan --limits NAME`). Memory is
 * the card's, less nothing: the plan's margin is the caller's choice (`--gpu-memory`). The M2 Max figure is Metal's
 * recommended working set of the 32 GB part (about two thirds of unified memory).
 */
export const GPU_LIMIT_PRESETS: Readonly<Record<string, GpuLimits>> = {
  "rtx4090": { ...NVIDIA, memory: 24 * GIB },
  "a6000-48gb": { ...NVIDIA, memory: 48 * GIB },
  "a100-40gb": { ...NVIDIA, memory: 40 * GIB },
  "a100-80gb": { ...NVIDIA, memory: 80 * GIB },
  "h100-80gb": { ...NVIDIA, memory: 80 * GIB },
  "m2-max": { maxBufferSize: 4 * GIB, maxStorageBufferBindingSize: 4 * GIB - 4, memory: Math.floor(21.33 * GIB) },
};

/** Options of {@linkcode accountingGpu}. */
export interface AccountingGpuOptions {
  /** Buffer and binding limits (`memory` is not used: pass `gpuMemory`). */
  limits: Omit<GpuLimits, "memory">;
  /** Budget limit in bytes (default none). */
  gpuMemory?: number;
  /** Whether the stand-in adapter offers `shader-f16` (default true). */
  shaderF16?: boolean;
  /** Ledger key of a buffer (default: its budget class); staging buffers are keyed `staging`. */
  keyOf?: (label: string, cls: MemoryClass) => string;
}

/** Live bytes by ledger key: now and at the peak of the budget's accounted bytes. */
export class AccountingLedger {
  #now = new Map<string, number>();
  #atPeak = new Map<string, number>();
  #maxOf = new Map<string, number>();
  #total = 0;
  #peak = 0;
  #hostPeak = 0;
  #host = 0;

  /** Bytes by key when the accounted total (all keys but `staging`) was highest since the last reset. */
  atPeak(): Record<string, number> {
    return Object.fromEntries(this.#atPeak);
  }

  /** The highest bytes of each key since the last reset (each at its own moment). */
  maxByKey(): Record<string, number> {
    return Object.fromEntries(this.#maxOf);
  }

  /** Bytes by key now. */
  now(): Record<string, number> {
    return Object.fromEntries(this.#now);
  }

  /** Highest bytes of host-mapped staging buffers since the last reset. */
  get stagingPeak(): number {
    return this.#hostPeak;
  }

  /** Starts peak tracking afresh from what is held now (as `MemoryBudget.resetPeak`). */
  resetPeak(): void {
    this.#peak = this.#total;
    this.#atPeak = new Map(this.#now);
    this.#maxOf = new Map(this.#now);
    this.#hostPeak = this.#host;
  }

  /** @internal Records `bytes` (negative: freed) under `key`. */
  add(key: string, bytes: number): void {
    const now = (this.#now.get(key) ?? 0) + bytes;
    this.#now.set(key, now);
    if (now > (this.#maxOf.get(key) ?? 0)) this.#maxOf.set(key, now);
    if (key === "staging") {
      this.#host += bytes;
      this.#hostPeak = Math.max(this.#hostPeak, this.#host);
      return;
    }
    this.#total += bytes;
    if (this.#total > this.#peak) {
      this.#peak = this.#total;
      this.#atPeak = new Map(this.#now);
    }
  }
}

const MAP_USAGE = 1 | 2; // GPUBufferUsage.MAP_READ | MAP_WRITE: host memory

/** What {@linkcode accountingGpu} returns. */
export interface AccountingGpu {
  /** A `Gpu` over the stand-in device: everything allocates through its budget, nothing runs. */
  gpu: Gpu;
  /** Live bytes by key. */
  ledger: AccountingLedger;
}

/**
 * A `Gpu` whose device allocates nothing and runs nothing, for sizing a run (see the module doc).
 *
 * @param options Limits, budget, features, ledger key.
 * @returns The device and its ledger.
 *
 * @example A 1 GiB tensor costs no memory here, and is accounted all the same
 * ```ts
 * import { accountingGpu, Tensor } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * const limits = { maxBufferSize: 2 ** 32, maxStorageBufferBindingSize: 2 ** 31 };
 * const { gpu, ledger } = accountingGpu({ limits });
 * const before = gpu.budget.report().current; // the uniform ring
 * const t = Tensor.empty(gpu, [2 ** 28], { class: "weights", label: "big" });
 * assert.equal(gpu.budget.report().current - before, 2 ** 30);
 * assert.equal(ledger.now().weights, 2 ** 30);
 * assert.deepEqual([...await Tensor.empty(gpu, [2]).toFloat32()], [0, 0]);
 * t.destroy();
 * assert.throws(() => Tensor.empty(gpu, [2 ** 31], { label: "huge" }), /"huge".*maxBufferSize/);
 * ```
 */
export function accountingGpu(options: AccountingGpuOptions): AccountingGpu {
  const ledger = new AccountingLedger();
  const keyOf = options.keyOf ?? ((_: string, cls: MemoryClass) => cls);
  const limits = {
    ...SPEC_LIMITS,
    maxBufferSize: options.limits.maxBufferSize,
    maxStorageBufferBindingSize: options.limits.maxStorageBufferBindingSize,
  };
  // The budget creates the buffer before it records the class, so the class travels through this slot.
  let pendingClass: MemoryClass = "scratch";
  // Each buffer's ledger entry, so that a pooled buffer handed to a tensor of another kind moves to that key.
  type Entry = { key: string; size: number };
  const entries = new WeakMap<GPUBuffer, Entry>();
  let made: Entry | null = null;
  const device = standInDevice(limits, (desc) => {
    if (desc.size > limits.maxBufferSize) {
      throw new GpuError(
        `Buffer "${desc.label}" of ${desc.size} bytes is larger than the adapter's maxBufferSize ` +
          `(${limits.maxBufferSize} bytes)`,
      );
    }
    const entry = {
      key: (desc.usage & MAP_USAGE) ? "staging" : keyOf(desc.label ?? "", pendingClass),
      size: desc.size,
    };
    ledger.add(entry.key, entry.size);
    made = entry;
    return () => ledger.add(entry.key, -entry.size);
  });
  const budget = new (class extends MemoryBudget {
    override createBuffer(desc: BudgetBufferDescriptor): GPUBuffer {
      pendingClass = desc.class;
      made = null;
      const buffer = super.createBuffer(desc);
      if (made) entries.set(buffer, made);
      return buffer;
    }
    override reuse(desc: BudgetBufferDescriptor): GPUBuffer | null {
      const buffer = super.reuse(desc);
      const entry = buffer && entries.get(buffer);
      const key = keyOf(desc.label ?? "", desc.class);
      if (entry && entry.key !== key) {
        ledger.add(entry.key, -entry.size);
        ledger.add(key, entry.size);
        entry.key = key;
      }
      return buffer;
    }
  })(device, options.gpuMemory);
  const features = { shaderF16: options.shaderF16 ?? true, timestampQuery: false };
  return { gpu: new Gpu(device, "accounting only (no memory, no kernels)", features, budget), ledger };
}

/** WebGPU's default limits, for everything a plan does not vary. */
const SPEC_LIMITS = {
  maxComputeWorkgroupsPerDimension: 65535,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxComputeWorkgroupStorageSize: 16384,
  maxStorageBuffersPerShaderStage: 8,
  minStorageBufferOffsetAlignment: 256,
  minUniformBufferOffsetAlignment: 256,
};

/**
 * Bytes the stand-in keeps of a buffer once the host writes it (small buffers only: the flags and counters a
 * caller reads back, e.g. NF4 quantization's "no bad value" sentinel); kernels never change them.
 */
const KEPT_BYTES = 1 << 20;

/** A `GPUDevice` of no-ops; `onBuffer` is told of each buffer and returns what to do when it is destroyed. */
function standInDevice(
  limits: Record<string, number>,
  onBuffer: (desc: GPUBufferDescriptor) => () => void,
): GPUDevice {
  const nothing = () => {};
  const kept = new WeakMap<GPUBuffer, Uint8Array>();
  const keep = (b: GPUBuffer): Uint8Array | undefined => {
    if (b.size > KEPT_BYTES) return undefined;
    let d = kept.get(b);
    if (!d) kept.set(b, d = new Uint8Array(b.size));
    return d;
  };
  const encoder = {
    beginComputePass: () => ({
      setPipeline: nothing,
      setBindGroup: nothing,
      dispatchWorkgroups: nothing,
      end: nothing,
    }),
    copyBufferToBuffer: (src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number) => {
      const from = kept.get(src);
      if (from) keep(dst)?.set(from.subarray(srcOffset, srcOffset + size), dstOffset);
      else kept.get(dst)?.fill(0, dstOffset, dstOffset + size);
    },
    clearBuffer: (b: GPUBuffer, offset = 0, size?: number) => kept.get(b)?.fill(0, offset, size && offset + size),
    finish: () => ({}),
  };
  // As WebGPU's: `dataOffset` and `size` count elements of a typed array, bytes of an ArrayBuffer.
  const writeBuffer = (
    b: GPUBuffer,
    offset: number,
    data: ArrayBuffer | ArrayBufferView,
    dataOffset = 0,
    size?: number,
  ) => {
    const unit = ArrayBuffer.isView(data)
      ? ((data as unknown as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1)
      : 1;
    const buf = ArrayBuffer.isView(data) ? data.buffer : data;
    const start = (ArrayBuffer.isView(data) ? data.byteOffset : 0) + dataOffset * unit;
    const bytes = size === undefined
      ? (ArrayBuffer.isView(data) ? data.byteLength : data.byteLength) - dataOffset * unit
      : size * unit;
    keep(b)?.set(new Uint8Array(buf, start, bytes), offset);
  };
  const device = {
    limits,
    features: new Set<string>(),
    lost: new Promise<never>(nothing),
    queue: { writeBuffer, submit: nothing, onSubmittedWorkDone: () => Promise.resolve() },
    addEventListener: nothing,
    pushErrorScope: nothing,
    popErrorScope: () => Promise.resolve(null),
    createShaderModule: () => ({}),
    createComputePipeline: () => ({ getBindGroupLayout: () => ({}) }),
    createBindGroup: () => ({}),
    createCommandEncoder: () => encoder,
    createBuffer: (desc: GPUBufferDescriptor) => standInBuffer(desc, onBuffer(desc), (b) => kept.get(b)),
    destroy: nothing,
  };
  return device as unknown as GPUDevice;
}

function standInBuffer(
  desc: GPUBufferDescriptor,
  onDestroy: () => void,
  keptOf: (b: GPUBuffer) => Uint8Array | undefined,
): GPUBuffer {
  let live = true;
  let zeros: ArrayBuffer | null = null; // one per buffer: the pager maps staging buffers again and again
  const buffer: GPUBuffer = {
    size: desc.size,
    usage: desc.usage,
    label: desc.label ?? "",
    mapState: "unmapped",
    mapAsync: () => Promise.resolve(),
    // A mapped range holds what was copied in, else zeros (what the pager moves through it is never looked at).
    getMappedRange: (offset = 0, size?: number) => {
      const end = offset + (size ?? desc.size - offset);
      const kept = keptOf(buffer);
      if (kept) return kept.slice(offset, end).buffer;
      zeros ??= new ArrayBuffer(desc.size);
      return end - offset === desc.size ? zeros : zeros.slice(0, end - offset);
    },
    unmap: () => {},
    destroy: () => {
      if (live) onDestroy();
      live = false;
    },
  } as unknown as GPUBuffer;
  return buffer;
}
