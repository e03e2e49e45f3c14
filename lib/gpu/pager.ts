/**
 * The pager: pageable GPU memory split in fixed-size pages, each with a host copy and, while resident, a slot
 * in a GPU pool, moved through a small ring of mapped staging buffers.
 *
 * Design (why eviction can be synchronous): the budget asks evictors for memory synchronously, but a dirty
 * page can only be written back asynchronously (`mapAsync`). So the sync path only drops clean pages (their
 * host copy is current); callers that page state in (the optimizer) write dirty pages back in batches right
 * after updating them ({@linkcode Pager.writeBack}), and the pager's own page-ins, as well as
 * `budget.reserveAsync`, write back least recently used dirty pages before dropping them.
 *
 * @module
 */

import type { Gpu } from "./device.ts";
import { formatBytes, parseBytes } from "../bytes.ts";
import { type Evictor, OutOfBudgetError, type PagingStats } from "./budget.ts";

/** Options for {@linkcode Pager}. */
export interface PagerOptions {
  /** Bytes per page (a multiple of 256; default 4 MiB). */
  pageSize?: number | string;
  /** Bytes per staging buffer (a multiple of the page size; default 4 pages). */
  stagingSize?: number | string;
  /** Staging buffers per direction (default 2: one fills while the other travels). */
  stagingBuffers?: number;
}

interface _Page {
  readonly owner: PagedBuffer;
  readonly index: number;
  slot: GPUBuffer | null;
  dirty: boolean;
  /** Bumped at every update, so a write-back that raced with a newer update leaves the page dirty. */
  version: number;
  pins: number;
  inflight: Promise<void> | null;
}

interface _Staging {
  buffer: GPUBuffer;
  /** Resolves when the buffer can be used again (upload: mapped for writing; download: unmapped, idle). */
  ready: Promise<void>;
}

/** A pageable allocation made by {@linkcode Pager.allocate}: whole pages, with a host copy of every page. */
export class PagedBuffer {
  /** Names the buffer in errors. */
  readonly label: string;
  /** Page size in bytes. */
  readonly pageSize: number;
  /** Number of pages. */
  readonly pageCount: number;
  /** The host copy (`pageCount * pageSize` bytes); current for clean pages and pages not resident. */
  readonly host: Uint8Array;

  /** Use {@linkcode Pager.allocate}. */
  constructor(label: string, pageSize: number, pageCount: number) {
    this.label = label;
    this.pageSize = pageSize;
    this.pageCount = pageCount;
    this.host = new Uint8Array(pageSize * pageCount);
  }

  /** The host copy of one page. */
  hostPage(index: number): Uint8Array {
    return this.host.subarray(index * this.pageSize, (index + 1) * this.pageSize);
  }
}

const DEFAULT_PAGE = 4 << 20;

/**
 * Pageable GPU memory. Pages are made resident with {@linkcode Pager.pageIn} (pinned until
 * {@linkcode Pager.release}); least recently used unpinned pages leave when the budget needs room.
 * Registers itself as an evictor of `gpu.budget`; slots are accounted as `optimizer` memory.
 *
 * @example A page leaves and comes back
 * ```ts
 * import { requestGpu } from "@qlora/webgpu";
 * import { Pager } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu({ gpuMemory: "2MiB" });
 * const pager = new Pager(gpu, { pageSize: "64KiB" });
 * const buf = pager.allocate("state", 1);
 * buf.host.fill(7);
 * const [slot] = await pager.pageIn(buf, [0]);
 * gpu.write(slot, new Float32Array(16384).fill(1.5)); // the resident copy changes on the GPU
 * pager.release(buf, [0], true);
 * await pager.writeBack(buf, [0]);
 * assert.equal(new Float32Array(buf.host.buffer, 0, 1)[0], 1.5);
 * pager.destroy();
 * ```
 */
export class Pager implements Evictor {
  /** The device. */
  readonly gpu: Gpu;
  /** Bytes per page. */
  readonly pageSize: number;
  /** Bytes per staging buffer. */
  readonly stagingSize: number;
  #pages = new Map<PagedBuffer, _Page[]>();
  /** Resident pages, least recently used first (a Map keeps insertion order). */
  #lru = new Map<_Page, true>();
  #free: GPUBuffer[] = [];
  #up: _Staging[] = [];
  #down: _Staging[] = [];
  #upNext = 0;
  #downNext = 0;
  #bytesIn = 0;
  #bytesOut = 0;

  /**
   * Creates a pager with its staging ring and registers it as an evictor of `gpu.budget`.
   *
   * @param gpu The device and budget.
   * @param options Page size and staging ring.
   * @throws {Error} If the page size is not a positive multiple of 256 or the staging size not a multiple of it.
   */
  constructor(gpu: Gpu, options: PagerOptions = {}) {
    this.gpu = gpu;
    this.pageSize = options.pageSize === undefined ? DEFAULT_PAGE : parseBytes(options.pageSize);
    if (this.pageSize <= 0 || this.pageSize % 256 !== 0) {
      throw new Error(`Pager: page size ${this.pageSize} must be a positive multiple of 256 bytes`);
    }
    this.stagingSize = options.stagingSize === undefined ? 4 * this.pageSize : parseBytes(options.stagingSize);
    if (this.stagingSize < this.pageSize || this.stagingSize % this.pageSize !== 0) {
      throw new Error(
        `Pager: staging size ${formatBytes(this.stagingSize)} must be a multiple of the page size ` +
          `${formatBytes(this.pageSize)}`,
      );
    }
    const n = Math.max(1, options.stagingBuffers ?? 2);
    const { budget } = gpu;
    for (let i = 0; i < n; i++) {
      this.#up.push({
        buffer: budget.createStagingBuffer({
          size: this.stagingSize,
          usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
          label: `pager upload staging ${i}`,
          mappedAtCreation: true,
        }),
        ready: Promise.resolve(),
      });
      this.#down.push({
        buffer: budget.createStagingBuffer({
          size: this.stagingSize,
          usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
          label: `pager download staging ${i}`,
        }),
        ready: Promise.resolve(),
      });
    }
    budget.addEvictor(this);
  }

  /**
   * Allocates a pageable buffer of `pageCount` pages, zero-filled, held on the host until paged in.
   *
   * @param label Names the buffer in errors.
   * @param pageCount Pages.
   * @returns The buffer.
   */
  allocate(label: string, pageCount: number): PagedBuffer {
    const b = new PagedBuffer(label, this.pageSize, pageCount);
    this.#pages.set(
      b,
      Array.from({ length: pageCount }, (_, index) => ({
        owner: b,
        index,
        slot: null,
        dirty: false,
        version: 0,
        pins: 0,
        inflight: null,
      })),
    );
    return b;
  }

  /** Whether a page has a GPU slot now. */
  isResident(buffer: PagedBuffer, index: number): boolean {
    return this.#page(buffer, index).slot !== null;
  }

  /** Whether a page was updated on the GPU and not yet written back. */
  isDirty(buffer: PagedBuffer, index: number): boolean {
    return this.#page(buffer, index).dirty;
  }

  /**
   * The pages this pager could hold at most right now: its own slots plus what the budget has free.
   * Zero means not even one page fits.
   */
  capacityPages(): number {
    const own = this.#free.length + this.#lru.size;
    const avail = this.gpu.budget.available();
    return own + (Number.isFinite(avail) ? Math.floor(Math.max(0, avail) / this.pageSize) : Infinity);
  }

  /**
   * Makes pages resident and pins them (they cannot be evicted until {@linkcode Pager.release}). Missing
   * pages travel together through the staging ring; room is made by evicting least recently used pages.
   *
   * @param buffer The buffer.
   * @param indices Page indices.
   * @returns The slot of each page, in order.
   * @throws {OutOfBudgetError} If the pages cannot all be resident at once.
   */
  async pageIn(buffer: PagedBuffer, indices: readonly number[]): Promise<GPUBuffer[]> {
    const pages = indices.map((i) => this.#page(buffer, i));
    if (new Set(pages).size !== pages.length) {
      throw new Error(`Pager: page-in of "${buffer.label}" lists a page twice ([${indices}])`);
    }
    for (const p of pages) {
      p.pins++;
      if (p.slot) this.#touch(p);
    }
    try {
      const missing = pages.filter((p) => !p.slot);
      await this.#reclaimable(missing.length - this.#free.length - this.#roomPages(), buffer);
      const slots = missing.map((p) => this.#slot(p));
      missing.forEach((p, k) => {
        p.slot = slots[k];
        p.dirty = false;
        this.#touch(p);
      });
      await this.#upload(missing);
    } catch (e) {
      for (const p of pages) p.pins--;
      throw e;
    }
    return pages.map((p) => p.slot!);
  }

  /**
   * Unpins pages made resident by {@linkcode Pager.pageIn}; `dirty` marks them updated on the GPU (recorded
   * work wrote them), so their host copies are stale until written back.
   */
  release(buffer: PagedBuffer, indices: readonly number[], dirty: boolean): void {
    for (const i of indices) {
      const p = this.#page(buffer, i);
      if (p.pins <= 0) throw new Error(`Pager: page ${i} of "${buffer.label}" released but not pinned`);
      p.pins--;
      if (dirty) {
        p.dirty = true;
        p.version++;
      }
    }
  }

  /**
   * Copies dirty pages back to their host copies, in batches through the download staging ring. The copies
   * are recorded at once (after all recorded work), so this may be left running while more work is recorded.
   *
   * @param buffer The buffer.
   * @param indices Pages (default: all).
   * @returns Resolves when every listed page is clean.
   */
  async writeBack(buffer: PagedBuffer, indices?: readonly number[]): Promise<void> {
    const all = this.#pages.get(buffer) ?? [];
    await this.#clean(indices ? indices.map((i) => this.#page(buffer, i)) : all);
  }

  /**
   * Pages out now: writes dirty pages back, then returns their slots to the pool (kept for the next page-ins,
   * and freed first when the budget needs room).
   *
   * @param buffer The buffer (no page may be pinned).
   * @returns Resolves when every page is on the host only.
   */
  async pageOut(buffer: PagedBuffer): Promise<void> {
    await this.writeBack(buffer);
    this.#drop(buffer, true);
  }

  /**
   * Replaces the contents of a buffer (e.g. when loading a saved state): resident slots go back to the pool.
   *
   * @param buffer The buffer (no page may be pinned).
   * @param data Exactly `buffer.host.byteLength` bytes.
   */
  overwrite(buffer: PagedBuffer, data: Uint8Array): void {
    if (data.byteLength !== buffer.host.byteLength) {
      throw new Error(`Pager: ${data.byteLength} bytes for "${buffer.label}" (${buffer.host.byteLength} bytes)`);
    }
    this.#drop(buffer, true);
    buffer.host.set(data);
  }

  /** Frees a buffer's slots (back to the pool) and forgets it. */
  free(buffer: PagedBuffer): void {
    this.#drop(buffer, false);
    this.#pages.delete(buffer);
  }

  /** Frees every slot and staging buffer and leaves the budget. */
  destroy(): void {
    for (const b of [...this.#pages.keys()]) this.free(b);
    for (const s of this.#free) this.gpu.free(s);
    this.#free = [];
    for (const s of [...this.#up, ...this.#down]) this.gpu.budget.free(s.buffer);
    this.#up = [];
    this.#down = [];
    this.gpu.budget.removeEvictor(this);
  }

  /** GPU bytes this pager holds: resident pages' slots and pooled slots. */
  heldBytes(): number {
    return (this.#lru.size + this.#free.length) * this.pageSize;
  }

  /** Paging counters. */
  pagingStats(): PagingStats {
    let total = 0;
    for (const pages of this.#pages.values()) total += pages.length;
    return {
      pagesResident: this.#lru.size,
      pagesOnHost: total - this.#lru.size,
      bytesPagedIn: this.#bytesIn,
      bytesPagedOut: this.#bytesOut,
    };
  }

  /** Bytes the budget can take back synchronously: pooled slots and clean unpinned pages. */
  evictableBytes(): number {
    let n = this.#free.length;
    for (const p of this.#lru.keys()) if (!p.pins && !p.dirty) n++;
    return n * this.pageSize;
  }

  /** Frees pooled slots, then clean unpinned pages, least recently used first (their host copy is current). */
  evict(bytes: number): number {
    let freed = 0;
    while (freed < bytes && this.#free.length) {
      this.gpu.free(this.#free.pop()!);
      freed += this.pageSize;
    }
    for (const p of [...this.#lru.keys()]) {
      if (freed >= bytes) break;
      if (p.pins || p.dirty) continue;
      this.gpu.free(this.#unmapSlot(p));
      freed += this.pageSize;
    }
    return freed;
  }

  /** Writes least recently used dirty pages back as needed, then evicts like {@linkcode Pager.evict}. */
  async evictAsync(bytes: number): Promise<number> {
    await this.#reclaimable(Math.ceil(bytes / this.pageSize) - this.#free.length, undefined);
    return this.evict(bytes);
  }

  #page(buffer: PagedBuffer, i: number): _Page {
    const pages = this.#pages.get(buffer);
    if (!pages) throw new Error(`Pager: "${buffer.label}" is not allocated by this pager (freed?)`);
    const p = pages[i];
    if (!p) throw new Error(`Pager: page ${i} out of range for "${buffer.label}" (${pages.length} pages)`);
    return p;
  }

  #touch(p: _Page): void {
    this.#lru.delete(p);
    this.#lru.set(p, true);
  }

  #roomPages(): number {
    const avail = this.gpu.budget.available();
    return Number.isFinite(avail) ? Math.floor(Math.max(0, avail) / this.pageSize) : Infinity;
  }

  /** Ensures at least `pages` unpinned resident pages are clean, writing back the least recently used dirty ones. */
  async #reclaimable(pages: number, forBuffer: PagedBuffer | undefined): Promise<void> {
    if (pages <= 0) return;
    const toClean: _Page[] = [];
    let n = 0;
    for (const p of this.#lru.keys()) {
      if (n >= pages) break;
      if (p.pins) continue;
      if (p.dirty) toClean.push(p);
      n++;
    }
    if (n < pages && forBuffer) {
      const pinned = [...this.#lru.keys()].filter((p) => p.pins).length;
      throw new OutOfBudgetError(
        `GPU memory budget too small for pageable "${forBuffer.label}": ${pages - n} more page(s) of ` +
          `${formatBytes(this.pageSize)} are needed with ${pinned} pinned, but the limit is ` +
          `${formatBytes(this.gpu.budget.limit)} and ${formatBytes(this.gpu.budget.report().current)} is held ` +
          `(${this.#heldByClass()}). Raise the limit or use a smaller page size (--page-size)`,
      );
    }
    await this.#clean(toClean);
  }

  #heldByClass(): string {
    return Object.entries(this.gpu.budget.report().byClass).map(([k, v]) => `${k} ${formatBytes(v)}`).join(", ");
  }

  /** A slot for a page: from the pool, a new buffer while the budget has room, else the LRU clean page's. */
  #slot(p: _Page): GPUBuffer {
    const pooled = this.#free.pop();
    if (pooled) return pooled;
    if (this.gpu.budget.available() < this.pageSize) {
      for (const q of this.#lru.keys()) {
        if (!q.pins && !q.dirty) return this.#unmapSlot(q);
      }
    }
    return this.gpu.createBuffer(this.pageSize, "optimizer", `page ${p.index} of "${p.owner.label}"`);
  }

  #unmapSlot(p: _Page): GPUBuffer {
    const s = p.slot!;
    p.slot = null;
    this.#lru.delete(p);
    return s;
  }

  #drop(buffer: PagedBuffer, keepPool: boolean): void {
    for (const p of this.#pages.get(buffer) ?? []) {
      if (p.pins) throw new Error(`Pager: page ${p.index} of "${buffer.label}" is pinned`);
      if (!p.slot) continue;
      const s = this.#unmapSlot(p);
      if (keepPool) this.#free.push(s);
      else this.gpu.free(s);
      p.dirty = false;
      p.version++;
    }
  }

  async #upload(pages: _Page[]): Promise<void> {
    const per = this.stagingSize / this.pageSize;
    for (let k = 0; k < pages.length; k += per) {
      const group = pages.slice(k, k + per);
      const st = this.#up[this.#upNext++ % this.#up.length];
      await st.ready;
      const mapped = new Uint8Array(st.buffer.getMappedRange(0, group.length * this.pageSize));
      group.forEach((p, j) => mapped.set(p.owner.hostPage(p.index), j * this.pageSize));
      st.buffer.unmap();
      group.forEach((p, j) => this.gpu.copy(st.buffer, j * this.pageSize, p.slot!, 0, this.pageSize));
      this.gpu.flush();
      // Mapping again waits for the copies to finish; the next use of this buffer awaits it.
      const remap = st.buffer.mapAsync(GPUMapMode.WRITE);
      remap.catch(() => {}); // a pager destroyed meanwhile aborts the mapping; only later users care
      st.ready = remap;
      this.#bytesIn += group.length * this.pageSize;
    }
  }

  async #clean(pages: readonly _Page[]): Promise<void> {
    for (;;) {
      const dirty = pages.filter((p) => p.dirty && p.slot);
      if (dirty.length === 0) return;
      const fresh = dirty.filter((p) => !p.inflight);
      const waits = dirty.filter((p) => p.inflight).map((p) => p.inflight!);
      const per = this.stagingSize / this.pageSize;
      for (let k = 0; k < fresh.length; k += per) waits.push(this.#download(fresh.slice(k, k + per)));
      await Promise.all(waits);
    }
  }

  #download(group: _Page[]): Promise<void> {
    const st = this.#down[this.#downNext++ % this.#down.length];
    const done = (async () => {
      await st.ready;
      const versions = group.map((p) => p.version);
      group.forEach((p, j) => this.gpu.copy(p.slot!, 0, st.buffer, j * this.pageSize, this.pageSize));
      this.gpu.flush();
      await st.buffer.mapAsync(GPUMapMode.READ, 0, group.length * this.pageSize);
      const mapped = new Uint8Array(st.buffer.getMappedRange(0, group.length * this.pageSize));
      group.forEach((p, j) => {
        p.owner.hostPage(p.index).set(mapped.subarray(j * this.pageSize, (j + 1) * this.pageSize));
        if (p.version === versions[j]) p.dirty = false;
        p.inflight = null;
      });
      st.buffer.unmap();
      this.#bytesOut += group.length * this.pageSize;
    })();
    st.ready = done.catch(() => {});
    for (const p of group) p.inflight = done;
    return done;
  }
}
