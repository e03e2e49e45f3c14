/**
 * AdamW on the GPU (decoupled weight decay, bias correction), with f32 or 8-bit blockwise states, resident
 * or paged. {@linkcode PagedAdamW}, {@linkcode AdamW8bit} and {@linkcode PagedAdamW8bit} only choose the
 * variant, as bitsandbytes' thin optimizer classes do.
 *
 * State layout: consecutive parameters whose parameter and gradient are contiguous views of the same buffers (as a
 * `TensorArena` packs a model's adapters: each at a multiple of 256 elements) are merged into runs; each run is cut
 * in segments of whole 256-element blocks; a segment's state (f32: m then v; 8-bit: m codes, v codes, m absmax,
 * v absmax) sits in one page. Resident states are one GPU buffer per page; paged states live in a
 * {@linkcode Pager}. The kernels are elementwise (8-bit: per 256-element block, and a block never straddles two
 * parameters), and the zero padding between the parameters of a run stays zero, so runs, pages and paging give the
 * bits of separate tensors.
 *
 * A step records the global gradient norm and clip scale on the GPU (`gradNorm`: one dispatch per run, or per
 * binding-sized chunk of one, then one for the total), then one AdamW dispatch per segment (one per page when the
 * parameters are one run), which reads the clip scale itself: no host wait sits between norm and update.
 *
 * @module
 */

import type { Gpu } from "../gpu/device.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { formatBytes, parseBytes } from "../bytes.ts";
import { OutOfBudgetError } from "../gpu/budget.ts";
import { type PagedBuffer, Pager } from "../gpu/pager.ts";
import { createDynamicMap } from "../quant/code_tables.ts";
import { adamw8bit, adamw8bitCodes } from "../kernels/adamw_8bit.ts";
import { adamwF32, type AdamWSegment, type AdamWStep } from "../kernels/adamw_f32.ts";
import { gradNorm, gradNormBytes, gradNormChunk } from "../kernels/clip_grad_norm.ts";
import { describeRuns, layoutState, packRuns, type Run, runCounts, type StateLayout } from "./_state_layout.ts";
import { readStateFile, writeStateFile } from "./state_file.ts";

/** A parameter to optimize and its gradient (both f32, same size). */
export interface OptimParam {
  /** Unique name (saved with the state). */
  name: string;
  /** The parameter, updated in place. */
  param: Tensor;
  /** Its gradient. */
  grad: Tensor;
}

/** Options for {@linkcode AdamW} and its variants. */
export interface AdamWOptions {
  /** Learning rate (default 2e-4, QLoRA's). */
  lr?: number;
  /** Decay rates of the first and second moments (default `[0.9, 0.999]`). */
  betas?: [number, number];
  /** Added to the denominator (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay (default 0). */
  weightDecay?: number;
  /** Keep states in a pager that spills to host memory (default false). */
  paged?: boolean;
  /** State precision: 32 (f32) or 8 (blockwise-quantized, block 256; default 32). */
  stateBits?: 32 | 8;
  /** Bytes per state page (default 4 MiB). */
  pageSize?: number | string;
  /** Paged: bytes per staging buffer (default 4 pages). */
  stagingSize?: number | string;
  /** Paged: page the next batch in while the current one is updated (default true). */
  prefetch?: boolean;
  /**
   * Paged: `"eager"` writes updated pages back to the host during each step, right after their update, so any
   * later allocation can evict them synchronously; `"lazy"` writes a page back only when the pager evicts it
   * (less traffic; other allocations then need `await budget.reserveAsync(...)` to take optimizer memory).
   * `"auto"` (default): eager when the budget has a limit, lazy when it has none (nothing is ever evicted then).
   */
  writeBack?: "auto" | "eager" | "lazy";
}

/** Options for {@linkcode AdamW.step}. */
export interface StepOptions {
  /** Learning rate for this step (e.g. from {@linkcode lrAt}); default the optimizer's. */
  lr?: number;
  /**
   * Clip the global gradient norm to this (as `torch.nn.utils.clip_grad_norm_`: gradients scaled by
   * `maxGradNorm / (norm + 1e-6)` when above); default Infinity (no clipping). The gradients are not modified.
   */
  maxGradNorm?: number;
}

/** Decoded moments of one parameter, from {@linkcode AdamW.state}. */
export interface AdamWState {
  /** First moment. */
  m: Float32Array;
  /** Second moment. */
  v: Float32Array;
}

const BYTES_PER_BLOCK = { 32: 256 * 8, 8: 256 * 2 + 8 } as const;

/**
 * AdamW with f32 states resident on the GPU (other variants through {@linkcode AdamWOptions}).
 *
 * @example One step moves against the gradient
 * ```ts
 * import { AdamW, requestGpu, Tensor } from "@qlora/webgpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const param = Tensor.fromArray(gpu, new Float32Array([1, 1]), [2]);
 * const grad = Tensor.fromArray(gpu, new Float32Array([0.5, -0.5]), [2]);
 * const opt = new AdamW(gpu, [{ name: "w", param, grad }], { lr: 0.1 });
 * await opt.step();
 * const [a, b] = await param.toFloat32();
 * assert.ok(Math.abs(a - 0.9) < 1e-6 && Math.abs(b - 1.1) < 1e-6);
 * opt.destroy();
 * ```
 */
export class AdamW {
  /** The device. */
  readonly gpu: Gpu;
  /** The parameters, in order. */
  readonly params: readonly OptimParam[];
  /** Default learning rate. */
  readonly lr: number;
  /** Moment decay rates. */
  readonly betas: readonly [number, number];
  /** Denominator epsilon. */
  readonly eps: number;
  /** Decoupled weight decay. */
  readonly weightDecay: number;
  /** State precision in bits. */
  readonly stateBits: 32 | 8;
  /** The pager holding the states (paged variants), else null. */
  readonly pager: Pager | null;
  /** Bytes per state page. */
  readonly pageSize: number;
  #runs: Run[];
  #layout: StateLayout;
  #resident: GPUBuffer[] = [];
  #paged: PagedBuffer | null = null;
  #qmap: GPUBuffer | null = null;
  /** The gradient ranges of the norm, and its buffer: (sum of squares, clip scale), then partial sums. */
  #normChunks: GPUBufferBinding[] = [];
  #clip: GPUBuffer;
  #prefetch: boolean;
  #eager: boolean;
  #step = 0;

  /**
   * Creates the optimizer and its zeroed states.
   *
   * @param gpu The device.
   * @param params Parameters and gradients (f32, equal sizes, unique names).
   * @param options Hyperparameters and variant.
   * @throws {Error} Naming the parameter whose gradient or dtype does not fit.
   */
  constructor(gpu: Gpu, params: readonly OptimParam[], options: AdamWOptions = {}) {
    this.gpu = gpu;
    this.params = [...params];
    this.lr = options.lr ?? 2e-4;
    this.betas = options.betas ?? [0.9, 0.999];
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0;
    this.stateBits = options.stateBits ?? 32;
    this.pageSize = parseBytes(options.pageSize ?? 4 << 20);
    this.#prefetch = options.prefetch ?? true;
    const writeBack = options.writeBack ?? "auto";
    this.#eager = writeBack === "eager" || (writeBack === "auto" && Number.isFinite(gpu.budget.limit));
    const names = new Set<string>();
    for (const { name, param, grad } of params) {
      if (names.has(name)) throw new Error(`AdamW: parameter name "${name}" appears twice`);
      names.add(name);
      if (param.dtype !== "f32" || grad.dtype !== "f32") {
        throw new Error(`AdamW: parameter "${name}" is ${param.dtype} with a ${grad.dtype} gradient; both must be f32`);
      }
      if (param.size !== grad.size) {
        throw new Error(`AdamW: parameter "${name}" has ${param.size} elements but its gradient ${grad.size}`);
      }
    }
    this.#runs = packRuns(params);
    this.#layout = layoutState(this.#runs.map((r) => r.size), this.pageSize, BYTES_PER_BLOCK[this.stateBits]);
    const label = `AdamW${this.stateBits === 8 ? "8bit" : ""} state`;
    if (options.paged) {
      this.pager = new Pager(gpu, { pageSize: this.pageSize, stagingSize: options.stagingSize });
      this.#paged = this.pager.allocate(label, this.#layout.pageCount);
    } else {
      this.pager = null;
      for (let i = 0; i < this.#layout.pageCount; i++) {
        this.#resident.push(gpu.createBuffer(this.pageSize, "optimizer", `${label} page ${i}`));
      }
    }
    if (this.stateBits === 8) {
      this.#qmap = adamw8bitCodes(gpu);
    }
    const chunk = gradNormChunk(gpu);
    for (const { first, size } of this.#runs) {
      const { grad } = params[first];
      for (let e = 0; e < size; e += chunk) {
        const [offset, n] = [grad.byteOffset + e * 4, Math.min(chunk, size - e)];
        this.#normChunks.push({ buffer: grad.buffer, offset, size: n * 4 });
      }
    }
    this.#clip = gpu.createBuffer(gradNormBytes(this.#normChunks), "scratch", `${label} gradient norm`);
  }

  /**
   * The buffer whose first two f32 are the last step's (sum of squares of all gradients, clip scale), for reading
   * along with other results in one host wait (`Math.sqrt` of the first is the norm).
   */
  get gradNormBuffer(): GPUBuffer {
    return this.#clip;
  }

  /**
   * The global L2 norm of the gradients at the last step, before clipping (NaN or Infinity when a gradient was not
   * finite: that step changed nothing). Reading it waits for the GPU.
   *
   * @returns The norm (0 before any step).
   */
  async gradNorm(): Promise<number> {
    return Math.sqrt((await this.gpu.readF32(this.#clip, 0, 1))[0]);
  }

  /** Steps taken so far. */
  get stepCount(): number {
    return this.#step;
  }

  /** Pages of state. */
  get pageCount(): number {
    return this.#layout.pageCount;
  }

  /**
   * One AdamW step over every parameter, with its current gradient, clipped to `maxGradNorm` on the GPU (the norm
   * is left in {@linkcode AdamW.gradNormBuffer}; nothing is read back). When a gradient is not finite the step
   * changes no parameter or state (the kernels read the norm), and {@linkcode AdamW.gradNorm} says so. Paged: pages
   * travel in batches through the staging ring; with prefetch the next batch is uploaded while the current one is
   * updated.
   *
   * @param options This step's learning rate and clipping.
   * @throws {OutOfBudgetError} If the budget cannot hold even one page of state.
   */
  async step(options: StepOptions = {}): Promise<void> {
    const hyper: AdamWStep = {
      lr: options.lr ?? this.lr,
      betas: this.betas,
      eps: this.eps,
      weightDecay: this.weightDecay,
      t: this.#step + 1,
    };
    // Alternate the scan direction: a cyclic scan over more pages than fit makes LRU evict exactly the page
    // needed next; a back-and-forth scan finds the most recently used pages still resident.
    const order = Array.from({ length: this.pageCount }, (_, i) => this.#step % 2 ? this.pageCount - 1 - i : i);
    this.#step++;
    if (this.pageCount === 0) {
      this.gpu.clear(this.#clip, 0, 4);
      return;
    }
    gradNorm(this.gpu, this.#normChunks, options.maxGradNorm ?? Infinity, this.#clip);
    if (!this.pager) {
      for (const p of order) this.#update(p, this.#resident[p], hyper);
      this.gpu.flush();
      return;
    }
    const pager = this.pager;
    const state = this.#paged!;
    const capacity = pager.capacityPages();
    if (capacity < 1) {
      const r = this.gpu.budget.report();
      throw new OutOfBudgetError(
        `GPU memory budget too small for one page of optimizer state: a page is ${formatBytes(this.pageSize)}, ` +
          `the limit ${formatBytes(r.limit)} and ${formatBytes(r.current)} is held by others. ` +
          `Raise the limit or use a smaller page size (--page-size)`,
      );
    }
    const stagingPages = pager.stagingSize / this.pageSize;
    const per = Math.max(1, Math.min(stagingPages, this.#prefetch ? Math.floor(capacity / 2) : capacity));
    const batches: number[][] = [];
    for (let i = 0; i < order.length; i += per) batches.push(order.slice(i, i + per));
    // Started transfers are awaited in order; the no-op catches only keep a failure from being reported twice
    // (as unhandled) when an earlier await throws first.
    const started = <T>(p: Promise<T>): Promise<T> => (p.catch(() => {}), p);
    const writes: Promise<void>[] = [];
    let next = started(pager.pageIn(state, batches[0]));
    for (let b = 0; b < batches.length; b++) {
      const slots = await next;
      try {
        batches[b].forEach((p, k) => this.#update(p, slots[k], hyper));
      } finally {
        pager.release(state, batches[b], true);
      }
      this.gpu.flush();
      if (this.#eager) writes.push(started(pager.writeBack(state, batches[b])));
      if (b + 1 < batches.length) {
        if (!this.#prefetch) await this.gpu.sync();
        next = started(pager.pageIn(state, batches[b + 1]));
      }
    }
    await Promise.all(writes);
  }

  /**
   * Paged variants: writes every state page back to the host and releases its GPU slot to the pager's pool
   * (freed first when the budget needs room), e.g. before a memory-hungry forward pass. Resident: no-op.
   */
  async pageOut(): Promise<void> {
    if (this.#paged) await this.pager!.pageOut(this.#paged);
  }

  /**
   * All state bytes, in the page layout (for saving and for tests comparing runs bit for bit).
   *
   * @returns `pageCount * pageSize` bytes.
   */
  async stateBytes(): Promise<Uint8Array> {
    if (this.#paged) {
      await this.pager!.writeBack(this.#paged);
      return this.#paged.host.slice();
    }
    const out = new Uint8Array(this.pageCount * this.pageSize);
    for (let p = 0; p < this.pageCount; p++) {
      out.set(new Uint8Array(await this.gpu.read(this.#resident[p])), p * this.pageSize);
    }
    return out;
  }

  /**
   * The moments of one parameter, decoded to f32 (8-bit: dequantized).
   *
   * @param name The parameter.
   * @returns First and second moments.
   */
  async state(name: string): Promise<AdamWState> {
    const index = this.params.findIndex((p) => p.name === name);
    if (index < 0) throw new Error(`AdamW: no parameter "${name}"`);
    const bytes = await this.stateBytes();
    const run = this.#runs.findLastIndex((r) => r.first <= index);
    const { first, offsets } = this.#runs[run];
    // The parameter's elements [start, end) of its run.
    const start = offsets[index - first];
    const end = start + this.params[index].param.size;
    const m = new Float32Array(end - start);
    const v = new Float32Array(end - start);
    const [qs, qu] = [createDynamicMap(true), createDynamicMap(false)];
    for (const s of this.#layout.segments.filter((s) => s.run === run)) {
      const at = s.page * this.pageSize + s.byteOffset;
      // The segment's elements [k0, k1) that are the parameter's.
      const [k0, k1] = [Math.max(0, start - s.elemOffset), Math.min(s.n, end - s.elemOffset)];
      const e0 = s.elemOffset + k0 - start;
      if (k0 >= k1) continue;
      if (this.stateBits === 32) {
        m.set(new Float32Array(bytes.buffer, at + k0 * 4, k1 - k0), e0);
        v.set(new Float32Array(bytes.buffer, at + (s.cap + k0) * 4, k1 - k0), e0);
        continue;
      }
      const absmax = new Float32Array(bytes.buffer, at + 2 * s.cap, (2 * s.cap) / 256);
      for (let k = k0; k < k1; k++) {
        m[e0 + k - k0] = qs[bytes[at + k]] * absmax[k >> 8];
        v[e0 + k - k0] = qu[bytes[at + s.cap + k]] * absmax[s.cap / 256 + (k >> 8)];
      }
    }
    return { m, v };
  }

  /**
   * Saves the step count and all states to `path` (atomically: a temporary file, then renamed).
   *
   * @param path The state file.
   */
  async save(path: string): Promise<void> {
    await writeStateFile(path, {
      kind: this.#kind(),
      step: this.#step,
      pageSize: this.pageSize,
      params: this.params.map((p) => ({ name: p.name, numel: p.param.size })),
      runs: runCounts(this.#runs),
    }, await this.stateBytes());
  }

  /**
   * Restores the step count and states saved by {@linkcode AdamW.save} (paged and resident files are the same).
   *
   * @param path The state file.
   * @throws {Error} Naming the file and what does not match (kind, page size, parameters), or if it is corrupt.
   */
  async load(path: string): Promise<void> {
    const { header, payload } = await readStateFile(path);
    const bad = (why: string) => new Error(`Optimizer state file ${path}: ${why}`);
    if (header.kind !== this.#kind()) throw bad(`holds "${header.kind}" state, this optimizer is "${this.#kind()}"`);
    if (header.pageSize !== this.pageSize) {
      throw bad(`was saved with pageSize ${header.pageSize}; this optimizer uses ${this.pageSize}`);
    }
    const want = this.params.map((p) => `${p.name}[${p.param.size}]`);
    const got = (header.params ?? []).map((p) => `${p.name}[${p.numel}]`);
    const diff = want.findIndex((w, i) => w !== got[i]);
    if (diff >= 0 || want.length !== got.length) {
      const i = diff >= 0 ? diff : Math.min(want.length, got.length);
      throw bad(`parameter ${i} is ${got[i] ?? "missing"} in the file but ${want[i] ?? "absent"} here`);
    }
    // Files from before runs laid out each parameter alone.
    const [fileRuns, runs] = [header.runs ?? want.map(() => 1), runCounts(this.#runs)];
    if (fileRuns.join() !== runs.join()) {
      throw bad(`holds state laid out in ${describeRuns(fileRuns)}; this optimizer's is ${describeRuns(runs)}`);
    }
    if (payload.byteLength !== this.pageCount * this.pageSize) {
      throw bad(`holds ${payload.byteLength} state bytes, expected ${this.pageCount * this.pageSize}`);
    }
    if (this.#paged) {
      this.pager!.overwrite(this.#paged, payload);
    } else {
      this.#resident.forEach((b, p) => this.gpu.write(b, payload.subarray(p * this.pageSize, (p + 1) * this.pageSize)));
    }
    this.#step = header.step;
  }

  /** Frees the states (and the pager). */
  destroy(): void {
    for (const b of this.#resident) this.gpu.free(b);
    this.#resident = [];
    this.pager?.destroy();
    if (this.#qmap) this.gpu.free(this.#qmap);
    this.#qmap = null;
    this.gpu.free(this.#clip);
  }

  #kind(): string {
    return this.stateBits === 8 ? "adamw-8bit" : "adamw-f32";
  }

  #update(page: number, slot: GPUBuffer, hyper: AdamWStep): void {
    for (const s of this.#layout.byPage[page]) {
      const { param, grad } = this.params[this.#runs[s.run].first];
      const range = (t: Tensor) => ({ buffer: t.buffer, offset: t.byteOffset + s.elemOffset * 4, size: s.n * 4 });
      const seg: AdamWSegment = {
        param: range(param),
        grad: range(grad),
        state: { buffer: slot, offset: s.byteOffset, size: s.bytes },
        n: s.n,
        cap: s.cap,
        clip: { buffer: this.#clip, offset: 0, size: 8 },
      };
      if (this.stateBits === 32) adamwF32(this.gpu, seg, hyper);
      else adamw8bit(this.gpu, seg, this.#qmap!, hyper);
    }
  }
}
