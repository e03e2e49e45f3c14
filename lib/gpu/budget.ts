/**
 * The GPU memory budget: every device buffer the toolkit creates is accounted here, by class.
 *
 * @module
 */

import { formatBytes, parseBytes } from "../bytes.ts";

/** What a GPU allocation is for. Only `optimizer` memory is pageable. */
export type MemoryClass = "weights" | "activations" | "optimizer" | "scratch";

/** Every memory class, in report order. */
export const MEMORY_CLASSES: readonly MemoryClass[] = [
  "weights",
  "activations",
  "optimizer",
  "scratch",
];

/** Paging counters an evictor can report, summed into {@linkcode BudgetReport.paging}. */
export interface PagingStats {
  /** Pages with a GPU slot now. */
  pagesResident: number;
  /** Pages held only on the host now. */
  pagesOnHost: number;
  /** Bytes copied host → GPU since creation. */
  bytesPagedIn: number;
  /** Bytes copied GPU → host since creation (write-backs of dirty pages). */
  bytesPagedOut: number;
}

/**
 * Something that can give GPU memory back when an allocation would pass the limit
 * (the pager registers one). `evict` frees at least `bytes` if it can and returns what it freed.
 *
 * `evict` is synchronous, so it may only drop memory whose contents are safe elsewhere (clean pages);
 * `evictAsync`, used by {@linkcode MemoryBudget.reserveAsync}, may first write dirty pages back.
 */
export interface Evictor {
  /** Bytes this evictor could free right now, synchronously. */
  evictableBytes(): number;
  /** Free at least `bytes` (fewer only if it cannot); return the bytes freed. */
  evict(bytes: number): number;
  /** Free at least `bytes`, writing dirty memory back first if needed; resolve to the bytes freed. */
  evictAsync?(bytes: number): Promise<number>;
  /** Paging counters for {@linkcode MemoryBudget.report}. */
  pagingStats?(): PagingStats;
}

/** A snapshot of the budget, from {@linkcode MemoryBudget.report}. */
export interface BudgetReport {
  /** The limit in bytes (`Infinity` when unset). */
  limit: number;
  /** Bytes held now, all classes. */
  current: number;
  /** Highest `current` ever seen (or since {@linkcode MemoryBudget.resetPeak}). */
  peak: number;
  /** Bytes held now, per class. */
  byClass: Record<MemoryClass, number>;
  /** Highest bytes held, per class. */
  peakByClass: Record<MemoryClass, number>;
  /** Live buffers. */
  buffers: number;
  /** Bytes of host-mapped staging buffers (host memory: not counted in `current` nor against the limit). */
  staging: number;
  /** Paging counters summed over the evictors (pagers); all zero without any. */
  paging: PagingStats;
}

/** Thrown when an allocation cannot fit the budget even after eviction. */
export class OutOfBudgetError extends Error {
  /**
   * Creates the error.
   *
   * @param message What was asked, the limit, and what each class holds.
   */
  constructor(message: string) {
    super(message);
    this.name = "OutOfBudgetError";
  }
}

/** Options for {@linkcode MemoryBudget.createStagingBuffer}. */
export interface StagingBufferDescriptor {
  /** Size in bytes. */
  size: number;
  /** `GPUBufferUsage` flags: `MAP_WRITE | COPY_SRC` or `MAP_READ | COPY_DST`. */
  usage: number;
  /** Label: shows in errors and GPU debuggers. */
  label: string;
  /** Create it mapped (an upload buffer can be filled at once). */
  mappedAtCreation?: boolean;
}

function zeroByClass(): Record<MemoryClass, number> {
  return { weights: 0, activations: 0, optimizer: 0, scratch: 0 };
}

/** Options for {@linkcode MemoryBudget.createBuffer}. */
export interface BudgetBufferDescriptor {
  /** Size in bytes. */
  size: number;
  /** `GPUBufferUsage` flags. */
  usage: number;
  /** What the memory is for. */
  class: MemoryClass;
  /** Label: shows in errors and GPU debuggers. */
  label: string;
  /** Create it mapped (for an initial upload). */
  mappedAtCreation?: boolean;
}

/**
 * Accounts every GPU buffer the toolkit creates. An allocation that would pass the limit first asks the
 * registered evictors (the pager) to free pageable memory; if that is not enough it throws
 * {@linkcode OutOfBudgetError} naming the request, the limit and what each class holds. The budget's `current`
 * therefore never passes its limit.
 *
 * The default limit is `Infinity`: WebGPU cannot report how much memory an adapter has, so without a
 * user-set limit only the device's own out-of-memory errors apply (reported by `Gpu` naming the buffer).
 *
 * Mapping (staging) buffers are host memory: {@linkcode MemoryBudget.createStagingBuffer} accounts them
 * apart, as the report's `staging` figure.
 *
 * @example Accounting two buffers
 * ```ts
 * import { MemoryBudget } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const adapter = await navigator.gpu.requestAdapter();
 * const device = await adapter!.requestDevice();
 * const budget = new MemoryBudget(device, 1 << 20);
 * const a = budget.createBuffer({ size: 4096, usage: GPUBufferUsage.STORAGE, class: "weights", label: "a" });
 * budget.createBuffer({ size: 1024, usage: GPUBufferUsage.STORAGE, class: "scratch", label: "b" });
 * budget.free(a);
 * assert.equal(budget.report().current, 1024);
 * assert.equal(budget.report().peak, 5120);
 * ```
 */
export class MemoryBudget {
  /** The device buffers are created on. */
  readonly device: GPUDevice;
  #limit: number;
  #held = new Map<GPUBuffer, { size: number; cls: MemoryClass }>();
  #byClass = zeroByClass();
  #peakByClass = zeroByClass();
  #current = 0;
  #peak = 0;
  #evictors: Evictor[] = [];
  #staging = new Map<GPUBuffer, number>();
  #stagingBytes = 0;

  /**
   * Creates a budget.
   *
   * @param device The device to allocate on.
   * @param limit Byte limit (number or string such as `"6GiB"`); unset means only the device's own limits apply.
   */
  constructor(device: GPUDevice, limit?: number | string) {
    this.device = device;
    this.#limit = limit === undefined ? Infinity : parseBytes(limit);
  }

  /** The limit in bytes (`Infinity` when unset). */
  get limit(): number {
    return this.#limit;
  }

  /**
   * Changes the limit. Lowering it below what is held first evicts pageable memory (synchronously, as
   * {@linkcode MemoryBudget.reserve}); if that is not enough the limit is left unchanged.
   *
   * @param limit Byte limit (number or string such as `"6GiB"`), or `Infinity`.
   * @throws {OutOfBudgetError} If more than the new limit is held and cannot be evicted.
   *
   * @example
   * ```ts
   * import { MemoryBudget } from "@qlora/webgpu";
   * import assert from "node:assert/strict";
   * const device = await (await navigator.gpu.requestAdapter())!.requestDevice();
   * const budget = new MemoryBudget(device);
   * budget.setLimit("1MiB");
   * assert.equal(budget.limit, 2 ** 20);
   * ```
   */
  setLimit(limit: number | string): void {
    const next = limit === Infinity ? Infinity : parseBytes(limit);
    const old = this.#limit;
    this.#limit = next;
    try {
      this.reserve(0, `lowering the limit to ${formatBytes(next)}`);
    } catch (e) {
      this.#limit = old;
      throw e;
    }
  }

  /** Registers something that can free pageable memory on demand. */
  addEvictor(evictor: Evictor): void {
    this.#evictors.push(evictor);
  }

  /** Removes an evictor added with {@linkcode MemoryBudget.addEvictor}. */
  removeEvictor(evictor: Evictor): void {
    this.#evictors = this.#evictors.filter((e) => e !== evictor);
  }

  /** Bytes that are free under the limit right now (without evicting). */
  available(): number {
    return this.#limit - this.#current;
  }

  /**
   * Makes room for `bytes` under the limit, evicting pageable memory if needed.
   *
   * @param bytes The bytes about to be allocated.
   * @param what A description of the request, for the error message.
   * @throws {OutOfBudgetError} If even eviction cannot make room.
   */
  reserve(bytes: number, what: string): void {
    if (this.#current + bytes <= this.#limit) return;
    for (const e of this.#evictors) {
      const need = this.#current + bytes - this.#limit;
      if (need <= 0) break;
      e.evict(need);
    }
    if (this.#current + bytes > this.#limit) throw this.#outOfBudget(bytes, what);
  }

  /**
   * Like {@linkcode MemoryBudget.reserve}, but evictors may first write dirty pages back to the host, so
   * more memory can be freed. Use it where the caller can await.
   *
   * @param bytes The bytes about to be allocated.
   * @param what A description of the request, for the error message.
   * @throws {OutOfBudgetError} If even eviction cannot make room.
   *
   * @example Room is made before allocating
   * ```ts
   * import { MemoryBudget } from "@qlora/webgpu";
   * import assert from "node:assert/strict";
   * const device = await (await navigator.gpu.requestAdapter())!.requestDevice();
   * const budget = new MemoryBudget(device, 4096);
   * await budget.reserveAsync(4096, "a scratch buffer");
   * await assert.rejects(budget.reserveAsync(8192, "too big"), /too big needs 8.00 KiB/);
   * ```
   */
  async reserveAsync(bytes: number, what: string): Promise<void> {
    for (const e of this.#evictors) {
      const need = this.#current + bytes - this.#limit;
      if (need <= 0) break;
      if (e.evictAsync) await e.evictAsync(need);
    }
    this.reserve(bytes, what);
  }

  /**
   * Creates a GPU buffer accounted under `class`.
   *
   * @param desc Size, usage, class and label.
   * @returns The buffer; give it back with {@linkcode MemoryBudget.free}.
   * @throws {OutOfBudgetError} If it does not fit.
   */
  createBuffer(desc: BudgetBufferDescriptor): GPUBuffer {
    const size = Math.max(4, Math.ceil(desc.size / 4) * 4);
    this.reserve(size, `"${desc.label}" (${desc.class})`);
    const buffer = this.device.createBuffer({
      size,
      usage: desc.usage,
      label: desc.label,
      mappedAtCreation: desc.mappedAtCreation ?? false,
    });
    this.#held.set(buffer, { size, cls: desc.class });
    this.#add(desc.class, size);
    return buffer;
  }

  /**
   * Creates a host-mapped staging buffer (for the pager's transfers). It is host memory: reported as
   * `staging`, not counted against the limit. Give it back with {@linkcode MemoryBudget.free}.
   *
   * @param desc Size, usage, label.
   * @returns The buffer.
   */
  createStagingBuffer(desc: StagingBufferDescriptor): GPUBuffer {
    const size = Math.max(4, Math.ceil(desc.size / 4) * 4);
    const buffer = this.device.createBuffer({ ...desc, size, mappedAtCreation: desc.mappedAtCreation ?? false });
    this.#staging.set(buffer, size);
    this.#stagingBytes += size;
    return buffer;
  }

  /**
   * Destroys a buffer made by {@linkcode MemoryBudget.createBuffer} (or a staging buffer) and returns its bytes
   * to the budget. Freeing a buffer twice is a no-op.
   *
   * @param buffer The buffer.
   * @param destroy False: only return the bytes; the caller destroys the buffer soon (once recorded work that
   *   uses it is submitted).
   * @returns Whether the budget held the buffer.
   */
  free(buffer: GPUBuffer, destroy = true): boolean {
    const staged = this.#staging.get(buffer);
    if (staged !== undefined) {
      this.#staging.delete(buffer);
      this.#stagingBytes -= staged;
    } else {
      const rec = this.#held.get(buffer);
      if (!rec) return false;
      this.#held.delete(buffer);
      this.#add(rec.cls, -rec.size);
    }
    if (destroy) buffer.destroy();
    return true;
  }

  /** Whether this budget holds `buffer`. */
  holds(buffer: GPUBuffer): boolean {
    return this.#held.has(buffer);
  }

  /** Restarts peak tracking from the current use (e.g. at the start of a training step). */
  resetPeak(): void {
    this.#peak = this.#current;
    this.#peakByClass = { ...this.#byClass };
  }

  /** Current and peak bytes, per class; staging bytes; paging counters. */
  report(): BudgetReport {
    const paging: PagingStats = { pagesResident: 0, pagesOnHost: 0, bytesPagedIn: 0, bytesPagedOut: 0 };
    for (const e of this.#evictors) {
      const s = e.pagingStats?.();
      if (!s) continue;
      paging.pagesResident += s.pagesResident;
      paging.pagesOnHost += s.pagesOnHost;
      paging.bytesPagedIn += s.bytesPagedIn;
      paging.bytesPagedOut += s.bytesPagedOut;
    }
    return {
      limit: this.#limit,
      current: this.#current,
      peak: this.#peak,
      byClass: { ...this.#byClass },
      peakByClass: { ...this.#peakByClass },
      buffers: this.#held.size,
      staging: this.#stagingBytes,
      paging,
    };
  }

  #outOfBudget(bytes: number, what: string): OutOfBudgetError {
    const held = Object.entries(this.#byClass).map(([k, v]) => `${k} ${formatBytes(v)}`).join(", ");
    const pageable = this.#evictors.reduce((s, e) => s + e.evictableBytes(), 0);
    return new OutOfBudgetError(
      `GPU memory budget exceeded: ${what} needs ${formatBytes(bytes)} but the limit is ` +
        `${formatBytes(this.#limit)} and ${formatBytes(this.#current)} is held (${held}; ` +
        `${formatBytes(pageable)} still pageable). Raise the limit (e.g. --gpu-memory) or use smaller shapes`,
    );
  }

  #add(cls: MemoryClass, bytes: number): void {
    this.#byClass[cls] += bytes;
    this.#current += bytes;
    if (this.#byClass[cls] > this.#peakByClass[cls]) this.#peakByClass[cls] = this.#byClass[cls];
    if (this.#current > this.#peak) this.#peak = this.#current;
  }
}
