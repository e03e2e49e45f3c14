/**
 * The profiler: per-kernel GPU time from timestamp queries (each dispatch in its own timed compute pass while
 * profiling), with the host-side counters of {@linkcode GpuStats}. Start it with {@linkcode Gpu.profile} or
 * `deno task finetune … --profile`.
 *
 * @module
 */

import { join } from "../platform/path.ts";
import type { Gpu } from "./device.ts";
import type { GpuStats } from "./stats.ts";
import { storage } from "../platform/storage.ts";

/** One kernel's line of a {@linkcode Profile}. */
export interface KernelProfile {
  /** Kernel file, with the entry point when it is not `main` (e.g. `rms_norm.backward`). */
  kernel: string;
  /** Dispatches per step. */
  calls: number;
  /** GPU milliseconds per step (timestamp queries); null where the adapter has no `timestamp-query`. */
  gpuMs: number | null;
  /** Fraction of the timed GPU time of the step; null without timestamps. */
  share: number | null;
  /** Bytes read + written per step, as the dispatches state them (0: none stated). */
  bytes: number;
  /** Floating point operations per step, as the dispatches state them (0: none stated). */
  flops: number;
  /** Achieved GB/s where the dispatches state their bytes and were timed. */
  gbps: number | null;
  /** Achieved GFLOP/s where the dispatches state their FLOPs and were timed. */
  gflops: number | null;
}

/** What {@linkcode Gpu.profile} measured, per step. */
export interface Profile {
  /** The adapter. */
  adapter: string;
  /** `timestamp`: GPU times from timestamp queries; `n/a`: the adapter has none, so only counts are given. */
  timer: "timestamp" | "n/a";
  /** Steps the figures are divided by. */
  steps: number;
  /** Wall milliseconds per step (profiling adds a timed pass per dispatch). */
  wallMs: number;
  /** Host-side counters per step (CPU milliseconds included). */
  stats: GpuStats;
  /** Kernels, most GPU time first (most calls first without timestamps). */
  kernels: KernelProfile[];
  /** Dispatches past the query capacity, counted but not timed. */
  untimed: number;
}

/** Dispatches timed per query set (two timestamps each; WebGPU allows 4096 queries per set). */
const CHUNK = 2048;
/** At most this many dispatches are timed in one profile. */
const MAX_CHUNKS = 64;

interface _Chunk {
  querySet: GPUQuerySet;
  kernels: string[];
}

/**
 * Records timestamps around dispatches for {@linkcode Gpu}; use {@linkcode Gpu.profile}.
 *
 * @example Counting without timestamps
 * ```ts
 * import { Profiler } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * const device = await (await navigator.gpu.requestAdapter())!.requestDevice();
 * const p = new Profiler(device, false);
 * assert.equal(p.timestampWrites("k", 1e6, 0), undefined);
 * assert.deepEqual(p.summary([], 1).map((k) => [k.kernel, k.calls, k.bytes, k.gpuMs]), [["k", 1, 1e6, null]]);
 * ```
 */
export class Profiler {
  readonly #device: GPUDevice;
  readonly #timed: boolean;
  #chunks: _Chunk[] = [];
  #calls = new Map<string, { calls: number; bytes: number; flops: number }>();
  #untimed = 0;

  /**
   * Creates a profiler.
   *
   * @param device The device.
   * @param timed Whether to write timestamps (the device has `timestamp-query`).
   */
  constructor(device: GPUDevice, timed: boolean) {
    this.#device = device;
    this.#timed = timed;
  }

  /** Whether GPU times are measured. */
  get timed(): boolean {
    return this.#timed;
  }

  /** Dispatches counted but not timed (past the query capacity). */
  get untimed(): number {
    return this.#untimed;
  }

  /**
   * Counts a dispatch of `kernel` and returns the timestamp writes for its pass (undefined when not timed).
   *
   * @param kernel Kernel name.
   * @param bytes Bytes the dispatch moves (0: unknown).
   * @param flops FLOPs it does (0: unknown).
   */
  timestampWrites(kernel: string, bytes: number, flops: number): GPUComputePassTimestampWrites | undefined {
    const c = this.#calls.get(kernel) ?? { calls: 0, bytes: 0, flops: 0 };
    c.calls++;
    c.bytes += bytes;
    c.flops += flops;
    this.#calls.set(kernel, c);
    if (!this.#timed) return undefined;
    let chunk = this.#chunks.at(-1);
    if (!chunk || chunk.kernels.length === CHUNK) {
      if (this.#chunks.length === MAX_CHUNKS) {
        this.#untimed++;
        return undefined;
      }
      chunk = { querySet: this.#device.createQuerySet({ type: "timestamp", count: 2 * CHUNK }), kernels: [] };
      this.#chunks.push(chunk);
    }
    const i = chunk.kernels.length;
    chunk.kernels.push(kernel);
    return { querySet: chunk.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /**
   * The per-kernel table, per step.
   *
   * @param stamps Each chunk's resolved timestamps (nanoseconds, begin and end per dispatch), in order.
   * @param steps Steps to divide by.
   */
  summary(stamps: BigUint64Array[], steps: number): KernelProfile[] {
    const ns = new Map<string, number>();
    stamps.forEach((t, ci) => {
      this.#chunks[ci].kernels.forEach((k, i) => {
        const d = Number(t[2 * i + 1] - t[2 * i]);
        ns.set(k, (ns.get(k) ?? 0) + Math.max(0, d));
      });
    });
    const total = [...ns.values()].reduce((a, b) => a + b, 0);
    const timed = this.#timed && stamps.length > 0 && this.#untimed === 0;
    const rows = [...this.#calls].map(([kernel, c]): KernelProfile => {
      const s = timed ? (ns.get(kernel) ?? 0) / 1e9 : 0;
      return {
        kernel,
        calls: c.calls / steps,
        bytes: c.bytes / steps,
        flops: c.flops / steps,
        gpuMs: timed ? s * 1e3 / steps : null,
        share: timed && total > 0 ? (ns.get(kernel) ?? 0) / total : null,
        gbps: timed && c.bytes > 0 && s > 0 ? c.bytes / s / 1e9 : null,
        gflops: timed && c.flops > 0 && s > 0 ? c.flops / s / 1e9 : null,
      };
    });
    return rows.sort((a, b) => (b.gpuMs ?? 0) - (a.gpuMs ?? 0) || b.calls - a.calls);
  }

  /**
   * Reads the timestamps (after the profiled work finished) and frees the query sets.
   *
   * @param gpu The profiled device.
   * @param steps Steps to divide by.
   * @param wallMs Wall milliseconds of all the steps.
   * @param stats Host-side counters of all the steps.
   */
  async report(gpu: Gpu, steps: number, wallMs: number, stats: GpuStats): Promise<Profile> {
    try {
      const enc = gpu.device.createCommandEncoder({ label: "profile resolve" });
      const chunks = this.#chunks.map((c) => {
        const buffer = gpu.createBuffer(
          16 * c.kernels.length,
          "scratch",
          "profile timestamps",
          GPUBufferUsage.QUERY_RESOLVE,
          false, // the resolve below writes it all (and is submitted before any clear would be)
        );
        enc.resolveQuerySet(c.querySet, 0, 2 * c.kernels.length, buffer, 0);
        return buffer;
      });
      gpu.device.queue.submit([enc.finish()]);
      const stamps: BigUint64Array[] = [];
      for (const b of chunks) {
        stamps.push(new BigUint64Array(await gpu.read(b)));
        gpu.free(b);
      }
      const per = Object.fromEntries(Object.entries(stats).map(([k, v]) => [k, v / steps]));
      return {
        adapter: gpu.adapterName,
        timer: this.#timed ? "timestamp" : "n/a",
        steps,
        wallMs: wallMs / steps,
        stats: per as unknown as GpuStats,
        kernels: this.summary(stamps, steps),
        untimed: this.#untimed,
      };
    } finally {
      for (const c of this.#chunks) c.querySet.destroy();
      this.#chunks = [];
    }
  }
}

/**
 * A profile as a text table: one line per kernel, then the host-side figures per step.
 *
 * @param p The profile.
 * @returns The table.
 *
 * @example
 * ```ts
 * import { formatProfile, type Profile } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * const p: Profile = {
 *   adapter: "a", timer: "n/a", steps: 1, wallMs: 5, untimed: 0,
 *   stats: { dispatches: 1, passes: 1, submits: 1, waits: 1, buffersCreated: 0, bindGroupsCreated: 1,
 *     writeBuffers: 1, recordMs: 0.1, submitMs: 0.2, waitMs: 3 },
 *   kernels: [{ kernel: "matmul", calls: 1, bytes: 0, flops: 0, gpuMs: null, share: null, gbps: null, gflops: null }],
 * };
 * assert.match(formatProfile(p), /matmul +1 +n\/a/);
 * ```
 */
export function formatProfile(p: Profile): string {
  const f = (v: number | null, digits = 3) => v === null ? "n/a" : v.toFixed(digits);
  const n = (v: number) => String(Math.round(v * 10) / 10);
  const lines = [
    `Profile on ${p.adapter}, per step over ${p.steps} step(s); GPU time: ${
      p.timer === "timestamp" ? "timestamp queries, each dispatch in its own pass" : "n/a (no timestamp-query)"
    }${p.untimed ? ` (${p.untimed} dispatches past the query capacity untimed)` : ""}`,
    `${"kernel".padEnd(32)} ${"calls".padStart(8)} ${"GPU ms".padStart(10)} ${"share".padStart(7)} ${
      "GB/s".padStart(8)
    } ${"GFLOP/s".padStart(8)}`,
    ...p.kernels.map((k) =>
      `${k.kernel.padEnd(32)} ${String(k.calls).padStart(8)} ${f(k.gpuMs).padStart(10)} ${
        (k.share === null ? "n/a" : `${(100 * k.share).toFixed(1)}%`).padStart(7)
      } ${f(k.gbps, 2).padStart(8)} ${f(k.gflops, 2).padStart(8)}`
    ),
  ];
  const s = p.stats;
  lines.push(
    `wall ${p.wallMs.toFixed(1)} ms; CPU recording ${s.recordMs.toFixed(2)} ms, submitting ${
      s.submitMs.toFixed(2)
    } ms, waiting ${s.waitMs.toFixed(2)} ms`,
    // Means over the steps (the first step's setup included): one decimal.
    `dispatches ${n(s.dispatches)}, passes ${n(s.passes)}, submits ${n(s.submits)}, host waits ${n(s.waits)}, ` +
      `buffers created ${n(s.buffersCreated)}, bind groups created ${n(s.bindGroupsCreated)}, ` +
      `writeBuffers ${n(s.writeBuffers)}`,
  );
  return lines.join("\n");
}

/**
 * Ends the profile begun with {@linkcode Gpu.startProfile}, writes it to `dir/profile.json` and logs its table
 * (what `deno task finetune … --profile` does after the last step).
 *
 * @param gpu The device being profiled.
 * @param dir Output folder.
 * @param steps Steps run since the start.
 * @param log Where the table goes.
 * @returns The profile.
 *
 * @example
 * ```ts
 * import { requestGpu, writeProfile } from "@qlora/webgpu/gpu";
 * import assert from "node:assert/strict";
 * const gpu = await requestGpu();
 * const dir = await Deno.makeTempDir();
 * gpu.startProfile();
 * const p = await writeProfile(gpu, dir, 1, () => {});
 * assert.equal(JSON.parse(await Deno.readTextFile(`${dir}/profile.json`)).steps, p.steps);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeProfile(
  gpu: Gpu,
  dir: string,
  steps: number,
  log: (line: string) => void,
): Promise<Profile> {
  const p = await gpu.stopProfile(Math.max(1, steps));
  await storage().writeFile(join(dir, "profile.json"), JSON.stringify(p, null, 2) + "\n");
  log(formatProfile(p));
  return p;
}
