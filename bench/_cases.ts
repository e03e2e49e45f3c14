// The bench registry: each bench file exports `cases(size)` (a list of BenchCase) and registers the same cases
// with Deno.bench through `registerDenoBench`; `bench/report.ts` runs every file listed in BENCH_FILES once.
// To add a bench: write `bench/<area>_bench.ts` in the same shape as nf4_bench.ts and add one line below.

import { type Gpu, requestGpu } from "../mod.ts";
import { ROOFLINES, rooflineValue } from "./_roofline.ts";
import { timeGpu, type Timer } from "./_timing.ts";

/** Bench files that export `cases(size)`, relative to this directory. */
export const BENCH_FILES: string[] = [
  "./nf4_bench.ts",
  "./paged_bench.ts",
  "./qlinear_bench.ts",
  "./peer_bench.ts",
  "./model_bench.ts",
  "./attention_bench.ts",
  "./host_bench.ts",
];

/** Problem sizes: `small` (the default; for llvmpipe) or `full` (the real-model shapes each bench names). */
export type BenchSize = "small" | "full";

/** What one timed call does, for rates: bytes moved and/or floating point operations. */
export interface BenchWork {
  /** Records the work (it may await, e.g. for a readback that is part of the operation). */
  step(): void | Promise<void>;
  /** Bytes read + written per call (for GB/s). */
  bytes?: number;
  /** Floating point operations per call (for GFLOP/s). */
  flops?: number;
  /** Frees what `setup` made. */
  dispose(): void;
  /** `wall` forces the wall clock (for work on another device, e.g. a peer library's, that our timestamps miss). */
  timer?: Timer;
}

/** One bench case. */
export interface BenchCase {
  /** Name, e.g. `nf4 dequantize f32`. */
  name: string;
  /** Problem shape, e.g. `[4096, 4096]`. */
  shape: number[];
  /** Roofline to divide by: a key of ROOFLINES in `_roofline.ts` (`copy` for GB/s). */
  roofline: string;
  /** Prepares inputs on `gpu` (not timed). */
  setup(gpu: Gpu): Promise<BenchWork>;
  /** Measures the whole record itself instead (for figures that are not a time per call, e.g. host-side costs). */
  measure?(gpu: Gpu): Promise<BenchRecord>;
}

/** One line of `deno task bench:report`. */
export interface BenchRecord {
  name: string;
  shape: number[];
  adapter: string;
  ms: number;
  gbps?: number;
  gflops?: number;
  roofline: string;
  roofline_value: number;
  ratio: number;
  timer: Timer;
  /** Further figures of the case (e.g. counts per step), printed after the rate. */
  extra?: Record<string, number | string>;
}

/** The size from `QLORA_BENCH_SIZE` (`small` unless set to `full`). */
export function benchSize(): BenchSize {
  return Deno.env.get("QLORA_BENCH_SIZE") === "full" ? "full" : "small";
}

/** Runs one case: setup, `timeGpu`, the rate and its ratio to the roofline measured on the same device. */
export async function runCase(gpu: Gpu, c: BenchCase, iters = 5): Promise<BenchRecord> {
  if (c.measure) return await c.measure(gpu);
  const work = await c.setup(gpu);
  try {
    const t = await timeGpu(gpu, work.step, iters, work.timer);
    const roofline = await rooflineValue(gpu, c.roofline);
    const unit = ROOFLINES[c.roofline].unit;
    const rate = unit === "GB/s" ? (work.bytes ?? 0) / t.seconds / 1e9 : (work.flops ?? 0) / t.seconds / 1e9;
    return {
      name: c.name,
      shape: c.shape,
      adapter: gpu.adapterName,
      ms: _round(t.seconds * 1e3),
      ...(unit === "GB/s" ? { gbps: _round(rate) } : { gflops: _round(rate) }),
      roofline: c.roofline,
      roofline_value: _round(roofline),
      ratio: _round(rate / roofline),
      timer: t.timer,
    };
  } finally {
    work.dispose();
  }
}

/** A one-line summary of a record. */
export function formatRecord(r: BenchRecord): string {
  const rate = r.gbps !== undefined ? `${r.gbps} GB/s, ` : r.gflops !== undefined ? `${r.gflops} GFLOP/s, ` : "";
  const extra = Object.entries(r.extra ?? {}).map(([k, v]) => `; ${k} ${v}`).join("");
  return `${r.name} [${r.shape.join("×")}]: ${r.ms} ms, ${rate}${r.ratio} of ${r.roofline} ` +
    `(${r.roofline_value}; ${r.timer} timer)${extra}`;
}

let _gpu: Promise<Gpu> | undefined;

/**
 * Registers `cases` with Deno.bench (a no-op outside `deno bench`). Deno times each call itself (wall clock,
 * with `gpu.sync()`); the first call of each case also prints its rate and roofline ratio as `runCase` measures
 * them.
 */
export function registerDenoBench(cases: BenchCase[]): void {
  for (const c of cases) {
    let prepared: Promise<{ gpu: Gpu; work: BenchWork }> | undefined;
    Deno.bench(`${c.name} [${c.shape.join("×")}]`, { group: c.name.split(" ").slice(0, 2).join(" ") }, async (b) => {
      if (!prepared) {
        prepared = (async () => {
          const gpu = await (_gpu ??= requestGpu());
          console.log(formatRecord(await runCase(gpu, c)));
          return { gpu, work: await c.setup(gpu) };
        })();
      }
      const { gpu, work } = await prepared;
      b.start();
      await work.step();
      await gpu.sync();
      b.end();
    });
  }
}

function _round(v: number): number {
  return Number(v.toPrecision(4));
}
