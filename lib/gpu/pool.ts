/**
 * The buffer pool behind `MemoryBudget`: freed activation and scratch buffers kept for the next request of
 * the same size and usage, so a steady-state training step creates no buffers (and its bind groups repeat).
 *
 * Sizes are exact (kernels read `arrayLength`, so a bound buffer must be the tensor's size). A buffer freed while
 * recorded work may still use it is "in flight": it becomes reusable only after that work is submitted, the rule
 * the device already follows for destroying buffers.
 *
 * @module
 */

interface _Idle {
  key: string;
  size: number;
}

/** A buffer removed from the pool: the caller destroys it (after the next submit when `inFlight`). */
export interface Released {
  /** The buffer. */
  buffer: GPUBuffer;
  /** Its {@linkcode BufferPool.key}. */
  key: string;
  /** Its bytes. */
  size: number;
  /** Recorded, not yet submitted work may use it. */
  inFlight: boolean;
}

/**
 * Idle buffers by size and usage, least recently freed first. Pure bookkeeping: the budget accounts the bytes and
 * destroys what it releases.
 *
 * @example Reuse follows the submit
 * ```ts
 * import { BufferPool } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * const device = await (await navigator.gpu.requestAdapter())!.requestDevice();
 * const pool = new BufferPool();
 * const b = device.createBuffer({ size: 64, usage: GPUBufferUsage.STORAGE });
 * pool.put(b, BufferPool.key(64, GPUBufferUsage.STORAGE), 64, true);
 * assert.equal(pool.take(BufferPool.key(64, GPUBufferUsage.STORAGE)), undefined); // in flight
 * pool.submitted();
 * assert.equal(pool.take(BufferPool.key(64, GPUBufferUsage.STORAGE)), b);
 * assert.equal(pool.bytes, 0);
 * ```
 */
export class BufferPool {
  // Ready buffers by key, each list by descending id: take() pops the oldest buffer. Taking by a fixed order, not
  // the order of frees, gives a repeated step the very buffers of the step before, so its bind groups repeat.
  #ready = new Map<string, GPUBuffer[]>();
  #ids = new WeakMap<GPUBuffer, number>();
  #nextId = 0;
  // Every ready buffer, least recently freed first: the release order.
  #lru = new Map<GPUBuffer, _Idle>();
  #inFlight = new Map<GPUBuffer, _Idle>();
  #bytes = 0;
  // Keys trimmed away, and the bytes the cap grew by because such a key was asked for again.
  #trimmed = new Set<string>();
  #slack = 0;

  /**
   * The pool key of a buffer: its exact size and usage flags.
   *
   * @param size Bytes (as created: a multiple of 4).
   * @param usage `GPUBufferUsage` flags.
   * @returns The key.
   */
  static key(size: number, usage: number): string {
    return `${size}/${usage}`;
  }

  /** Bytes of every pooled buffer, in flight included. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Pooled buffers, in flight included. */
  get count(): number {
    return this.#lru.size + this.#inFlight.size;
  }

  /**
   * Takes a ready buffer with `key`: the first pooled of those ready, so a repeated step gets the same buffers.
   *
   * @returns The buffer, or undefined when none is ready.
   */
  take(key: string): GPUBuffer | undefined {
    const b = this.#ready.get(key)?.pop();
    if (!b) return undefined;
    this.#bytes -= this.#lru.get(b)!.size;
    this.#lru.delete(b);
    return b;
  }

  /**
   * Keeps a freed buffer.
   *
   * @param buffer The buffer (no longer accounted to any user).
   * @param key Its {@linkcode BufferPool.key}.
   * @param size Its bytes.
   * @param inFlight True when recorded, not yet submitted work may use it: it waits for {@linkcode BufferPool.submitted}.
   */
  put(buffer: GPUBuffer, key: string, size: number, inFlight: boolean): void {
    this.#bytes += size;
    if (inFlight) this.#inFlight.set(buffer, { key, size });
    else this.#makeReady(buffer, { key, size });
  }

  /** Makes the in-flight buffers reusable: the work that used them was submitted. */
  submitted(): void {
    for (const [b, idle] of this.#inFlight) this.#makeReady(b, idle);
    this.#inFlight.clear();
  }

  /**
   * Removes buffers from the pool until at least `bytes` are out (or the pool is empty): least recently freed
   * ready buffers first, then in-flight ones.
   *
   * @param bytes Bytes wanted (`Infinity`: everything).
   * @returns The removed buffers, each with whether it was in flight (the caller destroys it after the submit).
   */
  release(bytes: number): Released[] {
    const out: Released[] = [];
    let freed = 0;
    if (bytes <= 0) return out;
    for (const [b, idle] of this.#lru) {
      if (freed >= bytes) break;
      this.#lru.delete(b);
      const list = this.#ready.get(idle.key)!;
      list.splice(list.indexOf(b), 1);
      if (list.length === 0) this.#ready.delete(idle.key);
      out.push({ buffer: b, key: idle.key, size: idle.size, inFlight: false });
      freed += idle.size;
    }
    for (const [b, idle] of this.#inFlight) {
      if (freed >= bytes) break;
      this.#inFlight.delete(b);
      out.push({ buffer: b, key: idle.key, size: idle.size, inFlight: true });
      freed += idle.size;
    }
    this.#bytes -= freed;
    return out;
  }

  /**
   * Before a new buffer of `key` is created: removes least recently freed buffers so the pool holds at most `cap`
   * bytes plus a slack. The slack grows by `size` whenever a key trimmed earlier is asked for again, so a repeated
   * step whose working set the cap cut short stops missing after a few steps.
   *
   * @param key The new buffer's key.
   * @param size Its bytes.
   * @param cap Bytes the pool may hold (the budget passes the high-water mark of pooled buffers in use).
   * @returns The removed buffers (see {@linkcode BufferPool.release}).
   */
  trimFor(key: string, size: number, cap: number): Released[] {
    if (this.#trimmed.delete(key)) this.#slack += size;
    const out = this.release(this.#bytes - cap - this.#slack);
    if (this.#trimmed.size > 4096) this.#trimmed.clear(); // shapes that keep changing: start over
    for (const r of out) this.#trimmed.add(r.key);
    return out;
  }

  #makeReady(buffer: GPUBuffer, idle: _Idle): void {
    this.#lru.set(buffer, idle);
    let id = this.#ids.get(buffer);
    if (id === undefined) this.#ids.set(buffer, id = this.#nextId++);
    const list = this.#ready.get(idle.key);
    if (!list) {
      this.#ready.set(idle.key, [buffer]);
      return;
    }
    let i = list.length;
    while (i > 0 && this.#ids.get(list[i - 1])! < id) i--;
    list.splice(i, 0, buffer);
  }
}
