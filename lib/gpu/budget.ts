/**
 * The GPU memory budget: every device buffer the toolkit creates is accounted here, by class.
 *
 * @module
 */

import { formatBytes, parseBytes } from "../bytes.ts";
import { BufferPool, type Released } from "./pool.ts";

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
  /** Bytes held now: all classes and the pool. */
  current: number;
  /** Highest `current` ever seen (or since {@linkcode MemoryBudget.resetPeak}); pooled bytes included. */
  peak: number;
  /** Highest bytes held by buffers in use (`current` less `pooled`), over the same span as `peak`. */
  peakInUse: number;
  /** Bytes held now, per class (buffers in use; the pool's idle bytes are `pooled`). */
  byClass: Record<MemoryClass, number>;
  /** Highest bytes held, per class. */
  peakByClass: Record<MemoryClass, number>;
  /** Live buffers (the pool's excluded). */
  buffers: number;
  /**
   * Bytes of idle buffers kept for reuse (see {@linkcode MemoryBudget.reuse}): part of `current` and of the
   * limit, released before any page is evicted or an allocation fails.
   */
  pooled: number;
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
  /** When freed, keep it for a later {@linkcode MemoryBudget.reuse} of the same size and usage. */
  pooled?: boolean;
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
 * Buffers created `pooled` (activations and scratch) go to a pool when freed and are handed out again by
 * {@linkcode MemoryBudget.reuse}, so a repeated step allocates nothing. The pool's idle bytes count in `current`
 * and against the limit (reported as `pooled`); they are released, least recently freed first, before any evictor
 * is asked and before an allocation fails. A new pooled buffer also trims the pool to about the high-water mark of
 * pooled buffers in use ({@linkcode BufferPool.trimFor}), so changing shapes cannot make the pool grow without bound.
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
  #held = new Map<GPUBuffer, { size: number; cls: MemoryClass; key?: string }>();
  #byClass = zeroByClass();
  #peakByClass = zeroByClass();
  #current = 0;
  #peak = 0;
  #peakInUse = 0;
  #evictors: Evictor[] = [];
  #staging = new Map<GPUBuffer, number>();
  #stagingBytes = 0;
  #pool = new BufferPool();
  // Bytes of pooled-kind buffers in use now, and their high-water mark (the pool's size cap).
  #livePooled = 0;
  #livePooledPeak = 0;
  // Buffers that leave while recorded work may use them: destroyed at the next submitted().
  #doomed: GPUBuffer[] = [];

  /**
   * Called with each accounted buffer as it leaves for good (freed without pooling, or released from the pool),
   * before it is destroyed: `Gpu` drops the bind groups that use it.
   */
  onDestroy: ((buffer: GPUBuffer) => void) | null = null;

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

  /** Bytes that are free under the limit right now without evicting (the pool's idle bytes count as free). */
  available(): number {
    return this.#limit - this.#current + this.#pool.bytes;
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
    this.releasePool(this.#current + bytes - this.#limit);
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
    this.releasePool(this.#current + bytes - this.#limit);
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
    const size = _size(desc.size);
    if (desc.pooled) {
      // A new shape: keep the pool within the high-water mark of pooled buffers in use.
      const cap = Math.max(this.#livePooledPeak, this.#livePooled + size);
      this.#release(this.#pool.trimFor(BufferPool.key(size, desc.usage), size, cap));
    }
    this.reserve(size, `"${desc.label}" (${desc.class})`);
    const buffer = this.device.createBuffer({
      size,
      usage: desc.usage,
      label: desc.label,
      mappedAtCreation: desc.mappedAtCreation ?? false,
    });
    this.#hold(buffer, size, desc.class, desc.pooled ? BufferPool.key(size, desc.usage) : undefined);
    return buffer;
  }

  /**
   * An idle pooled buffer of `desc`'s size and usage, now accounted under `desc.class`, or null if the pool has
   * none ready. Its contents are whatever its last user left (`Gpu` clears it unless told it will be overwritten).
   *
   * @param desc Size, usage, class and label (`pooled` is implied).
   * @returns The buffer, or null: create one with {@linkcode MemoryBudget.createBuffer}.
   *
   * @example A freed pooled buffer comes back
   * ```ts
   * import { MemoryBudget } from "@qlora/webgpu";
   * import assert from "node:assert/strict";
   * const device = await (await navigator.gpu.requestAdapter())!.requestDevice();
   * const budget = new MemoryBudget(device);
   * const desc = { size: 256, usage: GPUBufferUsage.STORAGE, class: "activations" as const, label: "x", pooled: true };
   * const a = budget.createBuffer(desc);
   * budget.free(a);
   * assert.equal(budget.report().pooled, 256);
   * assert.equal(budget.reuse(desc), a);
   * assert.equal(budget.reuse(desc), null);
   * assert.deepEqual([budget.report().pooled, budget.report().current], [0, 256]);
   * ```
   */
  reuse(desc: BudgetBufferDescriptor): GPUBuffer | null {
    const size = _size(desc.size);
    const key = BufferPool.key(size, desc.usage);
    const buffer = this.#pool.take(key);
    if (!buffer) return null;
    this.#current -= size;
    buffer.label = desc.label;
    this.#hold(buffer, size, desc.class, key);
    return buffer;
  }

  /**
   * Releases idle pooled buffers, least recently freed first, until at least `bytes` are out of the budget or the
   * pool is empty. In-flight ones leave the budget now and are destroyed at the next
   * {@linkcode MemoryBudget.submitted}.
   *
   * @param bytes Bytes wanted (default: the whole pool).
   * @returns The bytes released.
   */
  releasePool(bytes = Infinity): number {
    return this.#release(this.#pool.release(bytes));
  }

  #release(buffers: Released[]): number {
    let freed = 0;
    for (const r of buffers) {
      this.onDestroy?.(r.buffer);
      this.#destroy(r.buffer, r.inFlight);
      freed += r.size;
    }
    this.#current -= freed;
    return freed;
  }

  /**
   * Tells the budget that all recorded work was submitted: buffers freed meanwhile become reusable, and those
   * released meanwhile are destroyed (`Gpu` calls it after each submit).
   */
  submitted(): void {
    this.#pool.submitted();
    for (const b of this.#doomed) b.destroy();
    this.#doomed = [];
  }

  /**
   * Creates a host-mapped staging buffer (for the pager's transfers). It is host memory: reported as
   * `staging`, not counted against the limit. Give it back with {@linkcode MemoryBudget.free}.
   *
   * @param desc Size, usage, label.
   * @returns The buffer.
   */
  createStagingBuffer(desc: StagingBufferDescriptor): GPUBuffer {
    const size = _size(desc.size);
    const buffer = this.device.createBuffer({ ...desc, size, mappedAtCreation: desc.mappedAtCreation ?? false });
    this.#staging.set(buffer, size);
    this.#stagingBytes += size;
    return buffer;
  }

  /**
   * Gives back a buffer made by {@linkcode MemoryBudget.createBuffer} or {@linkcode MemoryBudget.reuse} (or a
   * staging buffer): a pooled one goes to the pool, any other is destroyed and its bytes leave the budget. Freeing
   * a buffer twice is a no-op.
   *
   * @param buffer The buffer.
   * @param inFlight True when recorded work that is not submitted yet may use it: it is destroyed, or becomes
   *   reusable, at the next {@linkcode MemoryBudget.submitted}.
   * @returns Whether the budget held the buffer.
   */
  free(buffer: GPUBuffer, inFlight = false): boolean {
    const staged = this.#staging.get(buffer);
    if (staged !== undefined) {
      this.#staging.delete(buffer);
      this.#stagingBytes -= staged;
      this.#destroy(buffer, inFlight);
      return true;
    }
    const rec = this.#held.get(buffer);
    if (!rec) return false;
    this.#held.delete(buffer);
    this.#add(rec.cls, -rec.size);
    if (rec.key === undefined) {
      this.onDestroy?.(buffer);
      this.#destroy(buffer, inFlight);
      return true;
    }
    this.#livePooled -= rec.size;
    this.#pool.put(buffer, rec.key, rec.size, inFlight);
    this.#current += rec.size; // still held, by the pool
    return true;
  }

  /** Whether this budget holds `buffer`. */
  holds(buffer: GPUBuffer): boolean {
    return this.#held.has(buffer);
  }

  /** Restarts peak tracking from the current use (e.g. at the start of a training step). */
  resetPeak(): void {
    this.#peak = this.#current;
    this.#peakInUse = this.#current - this.#pool.bytes;
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
      peakInUse: this.#peakInUse,
      byClass: { ...this.#byClass },
      peakByClass: { ...this.#peakByClass },
      buffers: this.#held.size,
      pooled: this.#pool.bytes,
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

  #hold(buffer: GPUBuffer, size: number, cls: MemoryClass, key: string | undefined): void {
    this.#held.set(buffer, { size, cls, key });
    this.#add(cls, size);
    if (key === undefined) return;
    this.#livePooled += size;
    this.#livePooledPeak = Math.max(this.#livePooledPeak, this.#livePooled);
  }

  #destroy(buffer: GPUBuffer, inFlight: boolean): void {
    if (inFlight) this.#doomed.push(buffer);
    else buffer.destroy();
  }

  #add(cls: MemoryClass, bytes: number): void {
    this.#byClass[cls] += bytes;
    this.#current += bytes;
    if (this.#byClass[cls] > this.#peakByClass[cls]) this.#peakByClass[cls] = this.#byClass[cls];
    if (this.#current > this.#peak) this.#peak = this.#current;
    this.#peakInUse = Math.max(this.#peakInUse, this.#current - this.#pool.bytes);
  }
}

/** A buffer's created size: at least 4 bytes, a multiple of 4. */
function _size(bytes: number): number {
  return Math.max(4, Math.ceil(bytes / 4) * 4);
}
